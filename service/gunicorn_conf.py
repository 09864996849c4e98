"""gunicorn settings for the API::

    gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'

Environment:
    MOBILECONV_BIND: address to listen on (default ``127.0.0.1:8000``).
    MOBILECONV_WEB_WORKERS: worker processes (default 2; the API is I/O-bound and small).
    MOBILECONV_WEB_TIMEOUT: seconds a request may take, uploads included (default 300).
"""

from __future__ import annotations

import os

bind = os.environ.get("MOBILECONV_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("MOBILECONV_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = 4
# Large uploads over slow links take a while; the default 30 s would cut them off.
timeout = int(os.environ.get("MOBILECONV_WEB_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("MOBILECONV_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
