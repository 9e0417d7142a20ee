"""GPU check: train each family on the `synth` profile on one GPU and measure the paper-scale model.

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``:

* per family, a few hundred iterations of the synth study's model (ResNet-18-narrow
  FPN, 128 px) on the GPU: training images/s (after a warm-up), peak GPU memory,
  final losses and test mAP50 / AP;
* per family, the training step of the VOC/COCO model (ResNet-50-FPN, 4 stacked
  convs) on a typical resized image (VOC 600x800, COCO 800x1088) at the profile's
  per-GPU batch and precision: images/s and peak memory;
* the estimated GPU-hours of the full voc and coco grids on one such GPU:
  images per run (epochs x training images) x runs of params.yaml's grid /
  measured images/s. An ESTIMATE: it leaves out data loading, evaluation and
  checkpointing, and random boxes stand in for real annotations.

Evaluation runs on the GPU when mmcv's compiled NMS has a CUDA kernel, else on
the CPU (recorded as ``eval_device``): training needs no compiled mmcv op.

Usually run through ``make gpu-check`` (scripts/gpu_check.sh builds mmcv first).
Rehearsal on a CPU: ``python benchmarks/gpu_check.py --device cpu --iters 6
--warmup 2 --probe-iters 1 --probe-batch 1 --amp none --out /tmp/gc``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FAMILIES = {
    "focal": {"type": "focal", "gamma": 2.0, "alpha": 0.25},
    "ohem": {"type": "ohem", "neg_pos_ratio": 3.0},
    "sse": {"type": "sse", "lambda_noobj": 0.5},
}
# images seen by one training run of each GPU profile: epochs x training images
#   voc: VOC07+12 trainval, 16,551 images, RepeatDataset x3 for 4 epochs (12 passes)
#   coco: train2017 images with annotations, 117,266, 12 epochs (1x)
IMAGES_PER_RUN = {"voc": 16_551 * 3 * 4, "coco": 117_266 * 12}
# typical image after the configs' Resize (keep_ratio) and padding to 32
PROBE_SHAPE = {"voc": (608, 800), "coco": (800, 1088)}
PROBE_BOXES = {"voc": 3, "coco": 7}


def grid_runs(params: dict[str, Any]) -> dict[str, int]:
    """Runs of each family in params.yaml's grid (settings x seeds)."""
    seeds = len(params["seeds"])
    return {"focal": len(params["focal"]["settings"]) * seeds,
            "ohem": len(params["ohem"]["neg_pos_ratio"]) * seeds,
            "sse": len(params["sse"]["lambda_noobj"]) * seeds}


def gpu_hours(images_per_run: int, runs: int, images_per_s: float) -> float:
    """Estimated hours of one GPU for ``runs`` runs of ``images_per_run`` images."""
    return images_per_run * runs / images_per_s / 3600.0


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_mem_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.startswith("cuda") else None


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def cuda_nms_works() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        from mmcv.ops import nms

        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]],
                             dtype=torch.float32, device="cuda")
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7], device="cuda"), 0.5)
        return keep.cpu().tolist() == [0, 2], "mmcv.ops.nms on CUDA"
    except Exception as e:  # noqa: BLE001 -- recorded, evaluation falls back to the CPU
        return False, f"mmcv.ops.nms on CUDA failed: {type(e).__name__}: {e}"[:300]


def make_synth(root: Path, params: dict[str, Any], workers: int,
               profile: str = "synth") -> tuple[Path, Path]:
    from lossbench.data.prepare import prepare
    from lossbench.data.synth import generate, generate_kwargs

    data = dict(params["profiles"][profile]["data"])
    data["workers"] = workers
    raw, ann = root / "raw", root / "prepared"
    if not (ann / "test.json").is_file():
        generate(raw, **generate_kwargs(data), log=lambda *a, **k: None)
        prepare("synth", raw, ann, log=lambda *a, **k: None)
    return raw, ann


def train_synth(family: str, raw: Path, ann: Path, work: Path, args, params) -> dict[str, Any]:
    from mmengine.hooks import Hook

    import lossbench.models.registry  # noqa: F401
    from lossbench.profiles import load_profile
    from lossbench.stages.train import amp_options, check_precision
    from lossbench.training.config import load_config
    from lossbench.training.engine import build_runner, collect_metrics, final_scalars

    prof = load_profile(REPO / "params.yaml", "synth")
    cfg = load_config(prof.config, data_root=raw, ann_dir=ann, imbalance=FAMILIES[family],
                      seed=0, work_dir=work / family)
    # the benchmark's own length, batch, loader workers and precision
    cfg.merge_from_dict({**amp_options(args.amp), "train_cfg.max_iters": args.iters,
                         "train_dataloader.batch_size": args.batch,
                         "train_dataloader.num_workers": args.workers,
                         "train_dataloader.persistent_workers": args.workers > 0,
                         "default_hooks.checkpoint.interval": args.iters + 1,
                         "default_hooks.checkpoint.save_last": False})
    check_precision(cfg)
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    device, warmup = args.device, args.warmup
    times: dict[str, float] = {}

    class Throughput(Hook):
        priority = "VERY_LOW"

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == warmup:
                _sync(device)
                times["t0"] = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == runner.max_iters:
                _sync(device)
                times["t1"] = time.perf_counter()

    _reset_peak(device)
    runner = build_runner(cfg)
    runner.register_hook(Throughput())
    runner.train()
    peak = _peak_mem_gib(device)
    timed = args.iters - warmup
    ips = timed * cfg.train_dataloader.batch_size / (times["t1"] - times["t0"])
    ok, why = cuda_nms_works() if device.startswith("cuda") else (False, "cpu run")
    eval_device = device if ok else "cpu"
    if eval_device == "cpu":
        runner.model.cpu()
    results = runner.test()
    metrics, no_det = collect_metrics(results or {})
    return {"family": family, "imbalance": FAMILIES[family], "iters": args.iters,
            "batch_size": cfg.train_dataloader.batch_size, "amp": args.amp,
            "train_images_per_s": round(ips, 1), "peak_gpu_mem_gib": peak,
            "final": final_scalars(runner.message_hub, args.iters),
            "mAP50": metrics["mAP50"], "AP": metrics["AP"], "no_detections": no_det,
            "eval_device": eval_device, "eval_note": why}


def probe_paper_model(family: str, profile: str, args) -> dict[str, Any]:
    """Training steps of the R50-FPN model on random images of the profile's typical size."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import InstanceData

    import lossbench.models.registry  # noqa: F401
    from lossbench.profiles import load_profile
    from lossbench.stages.train import amp_options, check_precision
    from lossbench.training.config import load_config

    prof = load_profile(REPO / "params.yaml", profile)
    n_classes = 20 if profile == "voc" else 80
    cfg = load_config(prof.config, imbalance=FAMILIES[family], seed=0)
    cfg.merge_from_dict(amp_options(args.amp))
    check_precision(cfg)
    cfg.model.backbone.init_cfg = None  # random weights: no download, same cost
    model = MODELS.build(cfg.model).to(args.device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = args.probe_batch or cfg.train_dataloader.batch_size
    h, w = PROBE_SHAPE[profile]
    if args.device == "cpu":
        h, w = h // 4, w // 4
    g = torch.Generator().manual_seed(0)

    def data():
        inputs, samples = [], []
        for _ in range(batch):
            inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
            k = PROBE_BOXES[profile]
            xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
            wh = (0.05 + 0.25 * torch.rand(k, 2, generator=g)) * torch.tensor([w, h])
            s = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w),
                                        "pad_shape": (h, w), "scale_factor": (1.0, 1.0),
                                        "batch_input_shape": (h, w)})
            s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                          labels=torch.randint(0, n_classes, (k,), generator=g))
            samples.append(s)
        return {"inputs": inputs, "data_samples": samples}

    batches = [data() for _ in range(2)]
    _reset_peak(args.device)
    for i in range(args.probe_warmup):
        model.train_step(batches[i % 2], optim)
    _sync(args.device)
    t0 = time.perf_counter()
    for i in range(args.probe_iters):
        model.train_step(batches[i % 2], optim)
    _sync(args.device)
    dt = time.perf_counter() - t0
    return {"profile": profile, "family": family, "image": [h, w], "batch_size": batch,
            "amp": args.amp, "images_per_s": round(args.probe_iters * batch / dt, 2),
            "peak_gpu_mem_gib": _peak_mem_gib(args.device)}


def device_record(device: str) -> dict[str, Any]:
    import mmcv
    import mmdet
    import mmengine
    import torch

    rec = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "mmcv": mmcv.__version__, "mmengine": mmengine.__version__,
           "mmdet": mmdet.__version__, "cpus": os.cpu_count()}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        rec.update(gpu=p.name, gpu_mem_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
    return rec


def to_markdown(res: dict[str, Any]) -> str:
    d = res["device"]
    lines = [f"# GPU check: {d.get('gpu', d['device'])}", "",
             f"torch {d['torch']} (CUDA {d['cuda']}), mmcv {d['mmcv']}, mmdet {d['mmdet']}, "
             f"Python {d['python']}, {d['cpus']} CPUs. Written by `make gpu-check` "
             f"({res['finished']}).", "",
             f"## synth profile on the GPU ({res['args']['iters']} iterations, batch "
             f"{res['args']['batch']}, precision {res['args']['amp']})", "",
             "| family | train img/s | peak GPU mem (GiB) | mAP50 | AP | eval on |",
             "|---|---:|---:|---:|---:|---|"]
    for r in res["synth"]:
        lines.append(f"| {r['family']} | {r['train_images_per_s']} | {r['peak_gpu_mem_gib']} | "
                     f"{r['mAP50']:.3f} | {r['AP']:.3f} | {r['eval_device']} |")
    lines += ["", "## Paper-scale model (ResNet-50-FPN), training step on random images", "",
              "| profile | family | image | batch | img/s | peak GPU mem (GiB) |",
              "|---|---|---|---:|---:|---:|"]
    for r in res["probe"]:
        lines.append(f"| {r['profile']} | {r['family']} | {r['image'][0]}x{r['image'][1]} | "
                     f"{r['batch_size']} | {r['images_per_s']} | {r['peak_gpu_mem_gib']} |")
    lines += ["", "## Estimated GPU-hours of the full grid on this one GPU (ESTIMATE)", "",
              "images per run x runs / measured img/s above; without data loading, evaluation "
              "and checkpoints.", "",
              "| profile | images per run | runs (focal/ohem/sse) | estimated GPU-hours |",
              "|---|---:|---|---:|"]
    for prof, e in res["estimate"].items():
        runs = "/".join(str(e["runs"][f]) for f in FAMILIES)
        lines.append(f"| {prof} | {e['images_per_run']:,} | {runs} | {e['gpu_hours']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.{json,md}")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a rehearsal")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30, help="iterations left out of img/s")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8, help="data-loader workers")
    ap.add_argument("--amp", choices=["none", "fp16", "bf16"], default="bf16")
    ap.add_argument("--probe-iters", type=int, default=20)
    ap.add_argument("--probe-warmup", type=int, default=3)
    ap.add_argument("--probe-batch", type=int, help="default: the profile's per-GPU batch")
    ap.add_argument("--data", help="synth data folder (default: a temporary one)")
    ap.add_argument("--data-profile", default="synth", choices=["synth", "smoke"],
                    help="whose generated set to train and test on (smoke: 16 images, rehearsals)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = ap.parse_args(argv)
    if args.warmup >= args.iters:
        ap.error("--warmup must be below --iters")

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device (use --device cpu for a rehearsal)", file=sys.stderr)
        return 2
    if args.amp == "bf16" and args.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        args.amp = "fp16"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix="lossbench-gpu-check-"))
    res: dict[str, Any] = {"device": device_record(args.device), "args": vars(args),
                           "synth": [], "probe": [], "estimate": {}}

    def save():
        res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        (out / "gpu_check.json").write_text(json.dumps(res, indent=2) + "\n")
        if res["synth"] and res["probe"]:
            (out / "gpu_check.md").write_text(to_markdown(res))

    t = time.perf_counter()
    raw, ann = make_synth(Path(args.data) if args.data else work / "data", params,
                          workers=max(1, args.workers), profile=args.data_profile)
    print(f"gpu_check: synth data ready ({time.perf_counter() - t:.0f} s)", flush=True)
    for fam in args.families:
        r = train_synth(fam, raw, ann, work, args, params)
        res["synth"].append(r)
        save()
        print(f"gpu_check: synth {fam}: {r['train_images_per_s']} img/s, "
              f"peak {r['peak_gpu_mem_gib']} GiB, mAP50 {r['mAP50']:.3f}", flush=True)
    runs = grid_runs(params)
    for prof in ("voc", "coco"):
        hours = 0.0
        for fam in args.families:
            r = probe_paper_model(fam, prof, args)
            res["probe"].append(r)
            hours += gpu_hours(IMAGES_PER_RUN[prof], runs[fam], r["images_per_s"])
            print(f"gpu_check: {prof} {fam}: {r['images_per_s']} img/s at batch {r['batch_size']}, "
                  f"peak {r['peak_gpu_mem_gib']} GiB", flush=True)
        res["estimate"][prof] = {"images_per_run": IMAGES_PER_RUN[prof],
                                 "runs": {f: runs[f] for f in args.families},
                                 "gpu_hours": round(hours, 2), "estimate": True}
        save()
    print((out / "gpu_check.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
