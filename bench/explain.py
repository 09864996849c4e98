"""Why a goal was missed, said from the run's own figures, one paragraph per missed figure."""

from __future__ import annotations

from typing import Any

from bench.record import Recorder


def misses(section: str, recorder: Recorder) -> list[str]:
    """Paragraphs for every figure of ``section`` that missed its goal."""
    lines = []
    for figure in recorder.figures:
        if figure["section"] != section or figure.get("met") is not False:
            continue
        reason = _reason(figure, recorder)
        lines.append(f"**Missed: {figure['name']} ({figure['model'] or 'service'})**: "
                     f"{figure['value']} {figure['unit']} against {figure['goal']}. {reason}")
        lines.append("")
    return lines


def _load_note(figure: dict[str, Any]) -> str:
    return (f"The 1-minute load average was {figure['load_before']} when the section began "
            f"and {figure['load_now']} when this figure was taken, on 2 cores.")


def _reason(figure: dict[str, Any], recorder: Recorder) -> str:
    name = figure["name"]
    if name.startswith("size_ratio"):
        fixed = figure["int8_bytes"] - figure["fp32_bytes"] / 4
        return (f"A quarter of the fp32 file would be {figure['fp32_bytes'] / 4:.0f} bytes; the "
                f"int8 file is {fixed:.0f} bytes above that: what int8 does not shrink (the "
                "program and operator tables, fp32 biases, per-channel scales and zero points, "
                "and in a .ptl the TorchScript code and the quantized-op packing metadata). The "
                "smaller the model, the larger that share: int8 alone cannot reach 0.25.")
    if name.startswith("latency_ratio_pte_int8"):
        text = ("This CPU has AVX2 but no VNNI, so XNNPACK's int8 convolutions gain less over "
                "fp32 than on a phone's dot-product units. ")
        fp32 = recorder.find("artifacts", "latency_ratio_pte_fp32", figure["model"])
        if fp32 is not None and fp32["value"] > 1.0:
            text += (f"The same backend in fp32 (the fp32 .pte) runs at {fp32['value']:.2f}x "
                     f"eager fp32 (min-to-min {fp32['min_ratio']:.2f}x), slower than ATen: "
                     "XNNPACK is slow on this virtual CPU as a whole (its cpuinfo cannot read "
                     "the CPU identification at start-up, so it may not pick AVX2/FMA kernels; "
                     "not verified), and int8 inherits that. ")
        return text + f"Min-to-min ratio: {figure.get('min_ratio')}. " + _load_note(figure)
    if name.startswith("latency_over_macs"):
        macs = recorder.find("pruning", f"macs_ratio_{name.rsplit('_', 1)[1]}", figure["model"])
        macs_text = f"{macs['value']:.3f}" if macs else "unknown"
        return (f"The MACs ratio is {macs_text}, but time does not fall in "
                "step: per-operator overhead, memory traffic and kernels tuned for channel "
                "counts the pruned layers no longer have are not counted in MACs, and the "
                "unpruned classifier and stem keep their cost. " + _load_note(figure))
    if name == "pte_int8_over_ort_int8":
        return (f"ExecuTorch int8 p50 {figure.get('pte-int8_p50_ms')} ms against ONNX Runtime "
                f"int8 {figure.get('ort-int8_p50_ms')} ms at one thread. " + _load_note(figure))
    if name == "service_over_script":
        outside = figure["service_seconds"] - figure["service_engine_seconds"]
        return (f"The service took {figure['service_seconds']:.1f} s, of which "
                f"{figure['service_engine_seconds']:.1f} s were the engine's stages and "
                f"{outside:.1f} s everything else (upload {figure['post_seconds']:.2f} s, queue, "
                "starting the sandboxed child and importing torch and ExecuTorch in it, "
                "uploading artifacts, polling granularity 0.1 s); the script took "
                f"{figure['script_seconds']:.1f} s with {figure['script_engine_seconds']:.1f} s "
                "in the engine. " + _load_note(figure))
    if name.endswith("_p99") or name.startswith(("idle_", "busy_")):
        return ("Each GET of a job reads and validates the whole record from Redis and "
                "re-renders the job document with its report and freshly signed artifact "
                "URLs, while /healthz returns a constant; under load the two gunicorn "
                "processes (4 threads each) also share the 2 cores with the load generator"
                " and, when busy, with the conversion. " + _load_note(figure))
    if name.startswith("report_over_independent"):
        loop_ms = figure["runs"] * figure["independent_p50_ms"]
        text = (f"The report said {figure['reported_p50_ms']} ms, a fresh process measured "
                f"{figure['independent_p50_ms']} ms over {figure['runs']} runs, a minute later. ")
        if loop_ms < 100:
            text += (f"The whole timed loop lasts about {loop_ms:.0f} ms, likely too short to "
                     "amortise "
                     "what a fresh process still pays in its first calls (page faults, lazy "
                     "initialisation of the runtime and its kernels) after only "
                     f"{figure['warmup']} warm-up calls; the converting process had run the "
                     "model many times before timing it. ")
        return text + _load_note(figure)
    return _load_note(figure)


def biggest_loss(recorder: Recorder) -> list[str]:
    """Name the biggest loss the profile and the overhead figures show."""
    import json

    imports = recorder.find("profile", "engine_import_seconds")
    total = recorder.find("profile", "digits_conversion_seconds")
    phases = [f for f in recorder.figures
              if f["section"] == "profile" and f["name"].startswith("phase ")]
    if imports is None or total is None or not phases:
        return ["The profile section did not run, so no loss is named here.", ""]
    top = max(phases, key=lambda f: f["value"])
    outside = recorder.find("overhead", "service_outside_engine", "digits")
    per_minute = recorder.find("throughput", "jobs_per_minute_1_workers", "digits")

    lines = ["### Biggest losses found", ""]
    lines += _polling_loss(recorder)
    text = ("Small jobs: the fixed cost of every job. Importing the engine (torch, "
            f"torchvision, ExecuTorch, torchao) takes {imports['value']:.1f} s in a fresh "
            "process, and every job's sandboxed child is a fresh process, so each job pays it "
            "again.")
    if outside is not None:
        text += (f" A digits job spent {outside['value']:.1f} s of its "
                 f"{outside['service_seconds']:.1f} s in the service outside the engine's "
                 "stages.")
    if per_minute is not None:
        text += (f" Small-job throughput ({per_minute['value']:.1f} jobs/min with one worker) "
                 "is bounded by these fixed costs, not by the model.")
    lines += [text, ""]
    lines += [
        f"Inside the conversion the largest step is `{top['name'][6:]}`: {top['value']:.1f} s "
        f"cumulative, {top['share']:.0%} of the {total['value']:.1f} s profiled digits "
        "conversion (cProfile inflates Python-heavy steps; the shares are what matters). "
        "Functions with the most own time:",
        "",
    ]
    own = recorder.find("profile", "top_own_time")
    if own is not None:
        for function, seconds in json.loads(own["value"]).items():
            lines.append(f"- `{function}`: {seconds:.2f} s")
        lines.append("")
    lines += [
        "What would recover it: a pre-imported child (a zygote that imports the engine once "
        "and forks a sandboxed child per job, keeping the limits), and caching the lowering "
        "of identical graphs. Neither is in the engine yet.",
        "",
    ]
    return lines


def _polling_loss(recorder: Recorder) -> list[str]:
    import json

    job = recorder.find("profile", "inprocess_job_ms")
    health = recorder.find("profile", "inprocess_healthz_ms")
    top = recorder.find("profile", "job_route_top_cumulative")
    ratio = recorder.find("polling", "idle_job_over_healthz")
    if job is None or health is None or top is None:
        return []
    text = (f"Polling: in-process, one `GET /v1/jobs/{{id}}` costs {job['value']:.2f} ms "
            f"against {health['value']:.2f} ms for `/healthz` "
            f"({job['value'] / health['value']:.1f}x; a {job['response_bytes']} byte document "
            "against 16 bytes): the job route reads the record from Redis, validates it into "
            "pydantic models, signs every artifact URL and serialises the whole report again "
            "on every poll.")
    if ratio is not None:
        text += (f" Through gunicorn under 64 clients the job route managed "
                 f"{ratio['value']:.2f}x the requests/s of `/healthz` (section 5).")
    functions = json.loads(top["value"])
    lines = [text, "", "Cumulative time per request under cProfile:", ""]
    for function, ms in functions.items():
        lines.append(f"- `{function}`: {ms:.3f} ms")
    read = functions.get("service/jobs.py:get")
    render = functions.get("service/routes.py:_job_json")
    whole = functions.get("service/routes.py:get_job")
    if read is not None and render is not None and whole is not None:
        lines += ["", f"Of {whole:.2f} ms in the route, reading the record from Redis "
                  f"(`JobStore.get`, one round trip plus validation) takes {read:.2f} ms and "
                  f"rendering the document (`_job_json`: signing and serialising) {render:.2f} "
                  "ms; on these 2 saturated cores the round trip also waits for redis-server to "
                  "be scheduled."]
    lines += ["", "What would recover it: serve polls from a cached, pre-rendered document per "
              "job and record version (it changes only on a state change, so one Redis read of "
              "a small version key, or an ETag, answers most polls), and sign URLs only when "
              "artifacts are asked for.", ""]
    return lines
