#!/usr/bin/env python3
"""Diarization error rate of a hypothesis RTTM against a reference RTTM,
scored by pyannote.metrics (the version pinned in
scripts/requirements-der.txt, installed into .venv by scripts/setup-python.sh).

    .venv/bin/python scripts/der.py REF.rttm HYP.rttm [UEM] [--collar S] [--skip-overlap]

Prints one JSON object on stdout:

    {"der": 0.0731, "false_alarm": 0.52, "missed": 1.10, "confusion": 0.57,
     "correct": 24.1, "total": 28.51, "hyp_speakers": 2, "ref_speakers": 2,
     "collar": 0.25, "skip_overlap": false, "uem": true}

der is a fraction (0.0731 = 7.31 %); false_alarm, missed, confusion,
correct and total are seconds (total: the reference speech scored, the
denominator). Defaults: collar 0.25 and overlapping speech scored
(skip_overlap False). pyannote's collar is the *whole* width of the
no-score zone centred on each reference boundary, so 0.25 forgives
+-0.125 s; NIST md-eval's `-c 0.25` (+-0.25 s) is `--collar 0.5` here.

UEM (optional; the samples ship NAME.uem): the scored span. Without one,
pyannote scores the extent of reference and hypothesis together.

Files name their recording in the RTTM's second field. When the reference
and the hypothesis each hold exactly one recording, they are scored against
each other whatever their names; otherwise recordings are matched by name
(one missing from the hypothesis counts as all missed) and the errors are
summed over them. A hypothesis with no turns at all (an empty file) is
valid. Exit status 2 on a usage or file error.

Also importable: `score(ref, hyp, uem=None, collar=0.25, skip_overlap=False)`
returns the same dict.
"""
import argparse
import json
import sys
import warnings


def read_rttm(path):
    """{uri: [(start, end, speaker), ...]} from the SPEAKER lines of an RTTM file."""
    turns = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";") or fields[0] != "SPEAKER":
                continue
            if len(fields) < 8:
                raise ValueError(f"{path}:{n}: an RTTM SPEAKER line has 9 or 10 fields: {line.strip()!r}")
            uri, start, duration, speaker = fields[1], float(fields[3]), float(fields[4]), fields[7]
            turns.setdefault(uri, [])
            if duration > 0:
                turns[uri].append((start, start + duration, speaker))
    return turns


def read_uem(path):
    """{uri: [(start, end), ...]} from a UEM file (uri channel start end)."""
    spans = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";"):
                continue
            if len(fields) < 4:
                raise ValueError(f"{path}:{n}: a UEM line is: uri channel start end")
            spans.setdefault(fields[0], []).append((float(fields[2]), float(fields[3])))
    return spans


def score(ref, hyp, uem=None, collar=0.25, skip_overlap=False):
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference = read_rttm(ref)
    hypothesis = read_rttm(hyp)
    spans = read_uem(uem) if uem else {}
    if not reference:
        raise ValueError(f"{ref}: no SPEAKER lines")
    if len(reference) == 1 and len(hypothesis) <= 1:
        (uri,) = reference
        hypothesis = {uri: next(iter(hypothesis.values()), [])}
    if spans and len(reference) == 1 and len(spans) == 1:
        spans = {next(iter(reference)): next(iter(spans.values()))}

    def annotation(uri, turns):
        a = Annotation(uri=uri)
        for i, (start, end, speaker) in enumerate(turns):
            a[Segment(start, end), i] = speaker
        return a

    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    hyp_speakers = set()
    ref_speakers = set()
    for uri, turns in reference.items():
        r = annotation(uri, turns)
        h = annotation(uri, hypothesis.get(uri, []))
        u = None
        if uri in spans:
            u = Timeline([Segment(s, e) for s, e in spans[uri]], uri=uri)
        elif spans:
            raise ValueError(f"{uem}: no span for recording {uri!r}")
        with warnings.catch_warnings():
            # "UEM was approximated by the union of reference and hypothesis extents".
            warnings.simplefilter("ignore")
            metric(r, h, uem=u)
        ref_speakers.update((uri, s) for _, _, s in turns)
        hyp_speakers.update((uri, s) for _, _, s in hypothesis.get(uri, []))

    c = metric.accumulated_
    total = c["total"]
    errors = c["false alarm"] + c["missed detection"] + c["confusion"]
    return {
        "der": round(errors / total, 6) if total > 0 else (0.0 if errors == 0 else float("inf")),
        "false_alarm": round(c["false alarm"], 4),
        "missed": round(c["missed detection"], 4),
        "confusion": round(c["confusion"], 4),
        "correct": round(c["correct"], 4),
        "total": round(total, 4),
        "hyp_speakers": len(hyp_speakers),
        "ref_speakers": len(ref_speakers),
        "collar": collar,
        "skip_overlap": skip_overlap,
        "uem": bool(spans),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref", help="reference RTTM")
    p.add_argument("hyp", help="hypothesis RTTM")
    p.add_argument("uem", nargs="?", help="UEM: the scored span (optional)")
    p.add_argument("--uem", dest="uem_opt", metavar="UEM", help="same as the third argument")
    p.add_argument("--collar", type=float, default=0.25,
                   help="total no-score width around reference boundaries, seconds (default 0.25)")
    p.add_argument("--skip-overlap", action="store_true", help="do not score overlapping speech")
    a = p.parse_args(argv)
    try:
        result = score(a.ref, a.hyp, a.uem or a.uem_opt, a.collar, a.skip_overlap)
    except (OSError, ValueError) as e:
        print(f"der.py: {e}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
