"""Run DNN+NeuroSim V1.3 on one of our networks at one chip setting; write the parsed results as JSON.

    python validation/run_neurosim.py --net small --rows 128 --adc-bits 5 --bits-per-cell 2 --out runs/neurosim/small

Downloads and builds NeuroSim on first use (into validation/.neurosim/, or $WXY_NEUROSIM_DIR; CC BY-NC, never part of
wxy_hw). Writes OUT/neurosim.json (the parsed per-layer and chip results, the config, the network's trace summary,
notes) and OUT/neurosim_stdout.txt, and prints NeuroSim's energy and area per part. A failing step prints one line
naming the step and the fix, and exits 1. VGG-8 takes ~90 s per NeuroSim run on one core; the small network ~3 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wxy_hw.utils import atomic_write_text
from validation.neurosim import (NETWORKS, NeuroSimConfig, NeuroSimError, build, cache_dir,
                                 run_network, summary_table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = NeuroSimConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=NETWORKS, default="vgg8",
                   help="vgg8: NeuroSim's VGG-8 on 3x32x32, seeded random weights and image; small: our VGG-11 w0.25 on "
                        "a Fashion-MNIST image (default vgg8)")
    p.add_argument("--rows", type=int, default=d.rows, help=f"subarray rows, numRowSubArray (default {d.rows})")
    p.add_argument("--cols", type=int, default=None, help="subarray columns, numColSubArray (default: = rows; V1.3 "
                                                           "simulates square subarrays only)")
    p.add_argument("--adc-bits", type=int, default=d.adc_bits, help=f"ADC bits, levelOutput = 2^bits (default {d.adc_bits})")
    p.add_argument("--bits-per-cell", type=int, default=d.bits_per_cell, help=f"cellBit (default {d.bits_per_cell})")
    p.add_argument("--cols-per-adc", type=int, default=d.cols_per_adc, help=f"numColMuxed (default {d.cols_per_adc})")
    p.add_argument("--parallel-rows", type=int, default=None,
                   help="rows read at once: = rows (default; operationmode 2) or 1 (operationmode 1); V1.3 has nothing between")
    p.add_argument("--node", type=int, default=d.node, help=f"technology node in nm, technode (default {d.node})")
    p.add_argument("--weight-bits", type=int, default=d.weight_bits, help=f"synapse bits, argv[2] (default {d.weight_bits})")
    p.add_argument("--input-bits", type=int, default=d.input_bits, help=f"input bits, argv[3] (default {d.input_bits})")
    p.add_argument("--memcell", choices=("rram", "sram", "fefet"), default=d.memcell, help="memcelltype (default rram)")
    p.add_argument("--pipeline", action="store_true", help="pipelined instead of layer-by-layer (Param.cpp pipeline)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any further Param.cpp assignment, e.g. --param readVoltage=0.3 --param 'resistanceOff=6e3*17'")
    p.add_argument("--ifm", choices=("auto", "neurosim", "padded"), default="auto",
                   help="IFM size in NetWork.csv: neurosim = the layer input (as NetWork_VGG8.csv; NeuroSim then skips the "
                        "padded border), padded = input + padding (every output position); auto: neurosim for vgg8, "
                        "padded for small")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights / image (default 0)")
    p.add_argument("--checkpoint", default=None, help="small: a wxy_hw checkpoint to trace instead of seeded weights")
    p.add_argument("--data-dir", default=None, help="small: where Fashion-MNIST is (default: wxy_hw's search path)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one NeuroSim run may take (default 1800)")
    p.add_argument("--no-cache", action="store_true", help="run NeuroSim again even when this config has a cached result")
    p.add_argument("--cache", default=None, help="NeuroSim cache folder (default $WXY_NEUROSIM_DIR or validation/.neurosim)")
    p.add_argument("--out", required=True, help="folder for neurosim.json and neurosim_stdout.txt")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> NeuroSimConfig:
    params = []
    for item in args.param:
        name, eq, value = item.partition("=")
        if not eq:
            raise NeuroSimError("configuring NeuroSim", f"--param {item!r}", "write --param NAME=VALUE")
        params.append((name.strip(), value.strip()))
    return NeuroSimConfig(rows=args.rows, cols=args.cols, adc_bits=args.adc_bits, bits_per_cell=args.bits_per_cell,
                          cols_per_adc=args.cols_per_adc, parallel_rows=args.parallel_rows, node=args.node,
                          weight_bits=args.weight_bits, input_bits=args.input_bits, memcell=args.memcell,
                          pipeline=args.pipeline, params=tuple(params))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        cache = cache_dir(args.cache)
        t0 = time.perf_counter()
        build(config, cache, log=print)  # fails fast (download, tools, make) before the network is traced
        built_s = time.perf_counter() - t0
        result = run_network(config, args.net, cache=cache, ifm=None if args.ifm == "auto" else args.ifm, seed=args.seed,
                             data_dir=args.data_dir, checkpoint=args.checkpoint, timeout=args.timeout,
                             use_cache=not args.no_cache, log=print)
        result["timings_s"]["build"] = built_s
        out = Path(args.out)
        atomic_write_text(out / "neurosim.json", json.dumps(result, indent=1))
        stdout = Path(result.get("stdout_path", ""))
        if stdout.is_file():
            atomic_write_text(out / "neurosim_stdout.txt", stdout.read_text())
    except NeuroSimError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"validation: writing results failed ({exc}): check --out", file=sys.stderr)
        return 1
    t = result["timings_s"]
    print(summary_table(result))
    print(f"NeuroSim ran {t['neurosim']:.1f} s (build {t['build']:.1f} s, traces {t['traces']:.1f} s)"
          + (" [cached result]" if result.get("from_cache") else ""))
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"wrote {out / 'neurosim.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
