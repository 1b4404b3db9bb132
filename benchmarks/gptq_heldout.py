"""Does GPTQ's smaller layer error hold on text it was not fitted to? (chapter 10's open question)

On the whole embedded model, INT4-g64 GPTQ ends with a *higher* WikiText-2 perplexity than
round-to-nearest, although GPTQ lowers every layer's error on its calibration inputs. This script
separates one candidate cause, overfitting the C4 calibration Hessian: for a few decoder blocks
it quantizes every linear with round-to-nearest, GPTQ and GPTQ with act-order (Hessians from the
``cpu`` profile's C4 calibration windows), and measures the relative output error

    ||W X - W' X||^2 / ||W X||^2   (prunelib.core.hessian.relative_error)

on the calibration inputs and on held-out WikiText-2 **validation** inputs of the same block, the
latter also without each window's first position, where the massive activations sit and may
dominate ``H``. The inputs of each block come from the dense model, so the errors are per layer,
not accumulated.

    python benchmarks/gptq_heldout.py            # writes results/diagnostics/gptq_heldout.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "diagnostics" / "gptq_heldout.json"


def block_hessians(model, blocks, windows: torch.Tensor, indices: list[int], device, skip_first: bool = False) -> dict:
    """``{block index: {linear name: H}}`` for the blocks in ``indices``, from the dense model's
    inputs of ``windows`` ``(n, seqlen)``; ``skip_first`` leaves each window's first position out
    of ``H`` (the token where Llama-family models put their massive activations)."""
    from prunelib.core.stats import HessianStat
    from prunelib.model.architecture import block_linears
    from prunelib.model.walk import InputStatistics, capture_block_inputs

    class AfterFirstToken(HessianStat):
        def update(self, x: torch.Tensor) -> None:
            super().update(x[:, 1:])  # x is (1, seqlen, d): one window per call

    calls = capture_block_inputs(model, windows.split(1), device)
    found = {}
    for index, block in enumerate(blocks[: max(indices) + 1]):
        if index in indices:
            linears = block_linears(block)
            with InputStatistics(linears, AfterFirstToken if skip_first else HessianStat, where=f"block {index}") as stats:
                for call in calls:
                    call.run(block)
            found[index] = {name: stats[name].H for name in linears}
        for call in calls:
            call.hidden = call.run(block)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", default="0,7,15,22,29", help="decoder blocks to measure")
    parser.add_argument("--calibration", type=int, default=32, help="C4 windows of the profile's length")
    parser.add_argument("--heldout", type=int, default=16, help="WikiText-2 validation windows of the same length")
    parser.add_argument("--quantize", default="int4-g64")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from prunelib import data
    from prunelib.core.gptq import gptq
    from prunelib.core.hessian import relative_error
    from prunelib.core.quantize import QuantSpec, rtn
    from prunelib.experiments.profiles import get_profile
    from prunelib.model.architecture import block_linears, decoder_blocks, weight_matrix
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, now, versions

    torch.set_grad_enabled(False)
    profile = get_profile("cpu")
    spec = QuantSpec.parse(args.quantize)
    model, tokenizer = load_model(profile.model, quiet=True)
    blocks, indices = decoder_blocks(model), [int(b) for b in args.blocks.split(",")]
    seqlen, device = profile.calib_seqlen, torch.device("cpu")
    calibration, calibration_source = data.c4_calibration(tokenizer, args.calibration, seqlen, profile.seed)
    validation, validation_source = data.wikitext2_tokens(tokenizer, "validation")
    heldout = validation[0, : args.heldout * seqlen].reshape(args.heldout, seqlen)

    fitted = block_hessians(model, blocks, calibration, indices, device)
    unseen = block_hessians(model, blocks, heldout, indices, device)
    unseen_tail = block_hessians(model, blocks, heldout, indices, device, skip_first=True)
    rows = []
    for index in indices:
        for name, module in block_linears(blocks[index]).items():
            W, H = weight_matrix(module).detach().float(), fitted[index][name]
            candidates = {"rtn": rtn(W, spec).weight, "gptq": gptq(W, H, spec).weight,
                          "gptq_act_order": gptq(W, H, spec, act_order=True).weight}
            rows.append({"block": index, "linear": name, "dead_inputs": int((H.diagonal() == 0).sum()),
                         **{f"{method}_{where}": relative_error(W, new, hessian)
                            for method, new in candidates.items()
                            for where, hessian in (("calibration", H), ("heldout", unseen[index][name]),
                                                   ("heldout_after_first_token", unseen_tail[index][name]))}})

    def summary(method: str, where: str) -> dict:
        ratios = [row[f"rtn_{where}"] / row[f"{method}_{where}"] for row in rows]
        return {"wins_over_rtn": sum(r > 1 for r in ratios), "of": len(ratios),
                "geomean_rtn_over_method": math.exp(sum(map(math.log, ratios)) / len(ratios))}

    record = {"question": "is GPTQ's per-layer gain over round-to-nearest kept on held-out inputs?",
              "quantize": str(spec), "model": model_record(profile.model, model), "seqlen": seqlen,
              "calibration": calibration_source, "heldout": {**validation_source, "windows": args.heldout},
              "summary": {f"{method}_{where}": summary(method, where) for method in ("gptq", "gptq_act_order")
                          for where in ("calibration", "heldout", "heldout_after_first_token")},
              "rows": rows, "versions": versions(), "threads": torch.get_num_threads(), "finished": now(),
              "command": "python benchmarks/gptq_heldout.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for key, value in record["summary"].items():
        print(f"{key:28s} beats RTN on {value['wins_over_rtn']}/{value['of']} linears; "
              f"RTN error / its error, geometric mean {value['geomean_rtn_over_method']:.2f}")


if __name__ == "__main__":
    main()
