"""Side-by-side benchmarks of mobileconv, run by ``make bench`` (``python -m bench``).

Each section measures one question of issue 6 on this machine, prints one JSON line per figure
and saves them under ``bench/results/`` (full runs) or ``var/bench/results/`` (quick or partial
runs); a full run then writes ``docs/BENCHMARKS.md`` from those figures alone.
"""
