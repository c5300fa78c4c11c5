"""Seconds per training step and peak memory of every model, at fixed configurations.

    python -m nbsyn.bench                                   # every model, cpu-preset sizes and 64 px
    python -m nbsyn.bench --models oasis,sivgan --sizes cpu,64,128,256 --steps 5 --threads 1
    python -m nbsyn.bench --device cuda --amp off,bf16,fp16 --channels-last both

A configuration is a model and a size. ``cpu`` is the model's ``cpu`` preset exactly as its notebook
trains it; a number N is the model's ``gpu`` preset (widths, batch) at N px (one-shot models: N x 1.5N,
SemIA: N x N). Weights are random: the time of a step does not depend on them. Every configuration
runs in its own subprocess. Peak memory is what the training steps add on top of the built models
(activations, gradients, optimiser states): on CUDA ``max_memory_allocated`` minus the allocation
before the first step, on the CPU the peak resident set (VmHWM, reset before the first step) minus
the resident set before it (includes allocator slack). The step time is the median over
``--steps`` timed steps after ``--warmup`` untimed ones.
``--amp`` bf16 runs each step under bf16 autocast (``nbsyn.amp.autocast_step``); fp16 (CUDA) is only
offered for OASIS / SPADE, whose step does gradient scaling. This is a script, not a test: the test
only checks that it runs at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

MODELS = ("dcgan", "oasis", "spade", "sivgan", "osmis", "stylegan2", "ssr", "fewshot_sis", "cat",
          "sis_uncond", "semia")
FP16_MODELS = ("oasis", "spade")  # steps with a GradScaler (Precision.backward / step)


# ---------------------------------------------------------------------------------------------
# One builder per model: (size, device, batch, precision) -> (step_fn, description, modules, sample)
# ``sample()`` is the trained network's output on fixed inputs (the AMP test compares it with fp32).
# ---------------------------------------------------------------------------------------------

def _preset(module, size, **px):
    """The cpu preset for size "cpu", the gpu preset at N px otherwise, "tiny" = smoke."""
    name = {"cpu": "cpu", "tiny": "smoke"}.get(str(size), "gpu")
    cfg = dict(module.PRESETS[name])
    if name == "gpu":
        cfg.update(image_size=int(size), **px)
    return cfg


def _batch(cfg, batch):
    return batch or cfg["batch_size"]


def _dcgan(size, device, batch, prec):
    from nbsyn.models import toy

    cfg = _preset(toy, size)
    b = _batch(cfg, batch)
    g = toy.DCGANGenerator(cfg["z_dim"], cfg["width"], cfg["image_size"]).to(device)
    d = toy.DCGANDiscriminator(cfg["width"], cfg["image_size"]).to(device)
    betas = (cfg["beta1"], 0.999)
    opt_g = torch.optim.Adam(g.parameters(), cfg["lr"], betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), cfg["lr"], betas=betas)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(b, 3, cfg["image_size"], cfg["image_size"], generator=gen).to(device) * 2 - 1

    def step(_):
        return toy.adversarial_step(g, d, opt_g, opt_d, real, torch.randn(b, cfg["z_dim"], generator=gen).to(device))

    z = torch.randn(b, cfg["z_dim"], generator=torch.Generator().manual_seed(1)).to(device)
    return step, f"{cfg['image_size']}px b{b}", (g, d), lambda: g(z)


def _oasis_like(variant):
    def build(size, device, batch, prec):
        from nbsyn.data import make_dataset
        from nbsyn.models import oasis as O

        cfg = _preset(O, size)
        cfg["batch_size"] = _batch(cfg, batch)
        cfg["amp"] = prec.mode if prec is not None else False
        data = make_dataset("scenes", 2 * cfg["batch_size"], cfg["image_size"], seed=0)
        step, objs = O.variant_trainer(cfg, variant, data, 0, device=device)
        onehot = O.one_hot(data.labels[:2].to(device), data.num_classes)
        noise = O.sample_noise(2, cfg["z_dim"], onehot.shape[-2:], torch.Generator().manual_seed(1)).to(device)
        return (step, f"{cfg['image_size']}px b{cfg['batch_size']}", (objs["G"], objs["D"]),
                lambda: objs["G"](onehot, noise))

    return build


def _oneshot_cfg(module, size):
    cfg = _preset(module, size, noise_shape=(4, 6))
    from nbsyn.models import sivgan

    return cfg, sivgan.image_shape(cfg)


def _sivgan(size, device, batch, prec):
    from nbsyn.models import sivgan

    cfg, (h, w) = _oneshot_cfg(sivgan, size)
    cfg["batch_size"] = _batch(cfg, batch)
    frames = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = sivgan.SIVGAN(cfg, frames, device=device, seed=0)
    z = model.G.sample_z(2, torch.Generator().manual_seed(1), device)
    return model.step, f"{h}x{w} b{cfg['batch_size']}", (model.G, model.D), lambda: model.G(z).image


def _osmis(size, device, batch, prec):
    from nbsyn.models import osmis

    cfg, (h, w) = _oneshot_cfg(osmis, size)
    cfg["batch_size"] = _batch(cfg, batch)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, h, w, generator=gen) * 2 - 1
    labels = (torch.arange(w)[None, :] * 3 // w).expand(h, w).clone()  # three vertical bands
    model = osmis.OSMIS(cfg, image, labels, 3, device=device, seed=0)
    z = model.G.sample_z(2, torch.Generator().manual_seed(1), device)
    return (model.step, f"{h}x{w} b{cfg['batch_size']} 3 classes", (model.G, model.D),
            lambda: torch.cat([model.G(z).image, model.G(z).soft_mask], 1))


def _sg_config(size):
    from nbsyn.models import stylegan2 as sg

    if str(size) in ("cpu", "tiny"):
        return sg.make_config({"cpu": "cpu", "tiny": "smoke"}[str(size)])
    return sg.make_config("gpu", image_size=int(size))


def _stylegan2(size, device, batch, prec):
    from nbsyn.models import stylegan2 as sg
    from nbsyn.nn.diffaug import diff_augment

    cfg = _sg_config(size)
    b = batch or {"tiny": 4, "cpu": 16}.get(str(size), 16)
    G, D = sg.build(cfg)
    G, D = G.to(device), D.to(device)
    opt_g, opt_d = sg.make_optimizers(G, D, r1_every=4)
    images = torch.rand(4 * b, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    step = sg.make_train_step(G, D, opt_g, opt_d, images, batch_size=b, r1_gamma=0.1, r1_every=4,
                              generator=torch.Generator().manual_seed(0),
                              augment=lambda x: diff_augment(x, policy="color,translation,cutout", p=1.0))
    z = torch.randn(2, cfg.z_dim, generator=torch.Generator().manual_seed(1)).to(device)
    return step, f"{cfg.image_size}px b{b} (R1 every 4)", (G, D), lambda: G(z, noise_mode="const")


def _ssr(size, device, batch, prec):
    from nbsyn.models import ssr
    from nbsyn.models import stylegan2 as sg

    cfg = _sg_config(size)
    b = batch or {"tiny": 4}.get(str(size), 8)
    G, D = sg.build(cfg)
    G, D = G.to(device), D.to(device)
    a = ssr.setup_arm("L_all + L_SS", G, D, freeze_d_blocks=1, lr=0.002, r1_every=4)
    shots = torch.rand(10, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    step = ssr.make_adapt_step(G, a["G_t"], a["D"], a["opt_g"], a["opt_d"], shots, a["spec"], batch_size=b,
                               r1_gamma=0.1, r1_every=4, lambda_ss=ssr.LAMBDA_SS,
                               ss_resolution=max(8, cfg.image_size // 2), generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, cfg.z_dim, generator=torch.Generator().manual_seed(1)).to(device)
    return step, f"{cfg.image_size}px b{b} (L_all + L_SS)", (a["G_t"], a["D"]), lambda: a["G_t"](z, noise_mode="const")


def _fewshot_sis(size, device, batch, prec):
    from nbsyn.models import fewshot_sis as fs
    from nbsyn.models import stylegan2 as sg

    cfg = _preset(fs, size)
    sgc = _sg_config(size)
    b = _batch(cfg, batch)
    G, _ = sg.build(sgc)
    G = G.to(device).requires_grad_(False)
    classes, res = 4, min(cfg["feat_res"], sgc.image_size // 2)
    E = fs.build_encoder({**cfg, "image_size": sgc.image_size}, classes, G).to(device)
    protos = torch.nn.functional.normalize(torch.randn(classes, sgc.channels(res)), dim=1).to(device)
    source = fs.pseudo_source(G, protos, res, sgc.image_size, torch.Generator(device).manual_seed(0))
    opt = torch.optim.Adam(E.parameters(), lr=cfg["enc_lr"])
    labels = torch.randint(0, classes, (2, sgc.image_size, sgc.image_size), generator=torch.Generator().manual_seed(1))
    onehot = fs.onehot(labels.to(device), classes)
    return fs.make_encoder_step(E, G, opt, source, b), f"{sgc.image_size}px b{b} (encoder)", (E,), lambda: E(onehot)


def _cat(size, device, batch, prec):
    from nbsyn.data import make_dataset
    from nbsyn.models import cat as C
    from nbsyn.models import oasis as O

    cfg = _preset(C, size)
    src = C.source_config({"preset": "cpu" if str(size) in ("cpu", "tiny") else "gpu",
                           "image_size": cfg["image_size"]})
    if str(size) == "tiny":
        src = {**O.PRESETS["smoke"], "image_size": cfg["image_size"]}
    b = _batch(cfg, batch)
    n_source, data = 8, make_dataset("autumn", 2 * b, cfg["image_size"], seed=0)
    G = O.build_generator(src, n_source)
    D = O.build_discriminator(src, n_source)
    gen = torch.Generator().manual_seed(0)
    cat = C.CATGenerator(G, C.random_affinity(data.num_classes, n_source, gen)).to(device)
    D2, params = C.transfer_discriminator(D, data.num_classes, cfg["freeze_d_blocks"], gen)
    D2 = D2.to(device)
    betas = tuple(cfg["betas"])
    opt_g = torch.optim.Adam(cat.parameters(), lr=cfg["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(params, lr=cfg["lr_d"], betas=betas)
    batches = data.batches(b, gen)

    def sample_batch():
        images, labels = next(batches)
        return images.to(device), labels.to(device)

    step = O.make_train_step(cat, D2, opt_g, opt_d, sample_batch, lambda_labelmix=cfg["lambda_labelmix"],
                             balance=cfg["balance"])
    onehot = O.one_hot(data.labels[:2].to(device), data.num_classes)
    noise = O.sample_noise(2, cat.z_dim, onehot.shape[-2:], torch.Generator().manual_seed(1)).to(device)
    return step, f"{cfg['image_size']}px b{b} (stage 2)", (cat, D2), lambda: cat(onehot, noise)


def _sis_uncond(size, device, batch, prec):
    import torch.nn.functional as F

    from nbsyn.models import sis_uncond as su
    from nbsyn.models import stylegan2 as sg

    cfg = _preset(su, size)
    sgc = _sg_config(size)
    res = min(cfg["feature_res"], sgc.image_size // 2)
    cfg.update(feature_res=res, batch_size=_batch(cfg, batch))
    G, D = sg.build(sgc)
    G, D = G.to(device).requires_grad_(False), D.to(device)
    proxy = su.ProxyMasks(F.normalize(torch.randn(cfg["n_clusters"], sgc.channels(res)), dim=1)).to(device)
    R = su.build_rearranger(cfg, sgc.channels(res)).to(device)
    real = (torch.rand(64, 3, sgc.image_size, sgc.image_size) * 2 - 1).to(device)
    step, _ = su.make_rearranger_step(G, D, R, proxy, real, cfg, generator=torch.Generator().manual_seed(0))
    def sample():  # R's output for a flipped target mask (the notebook's self iteration)
        ws = G.map(torch.randn(2, sgc.z_dim, generator=torch.Generator().manual_seed(1)).to(device))
        feats, partial = su.split(G.synthesis, ws, res)
        m_s = proxy.assign(feats)
        f_out, rgb = R(feats, m_s.flip(-1), partial, m_s)
        return torch.cat([f_out.flatten(1), rgb.flatten(1)], 1)

    return step, f"{sgc.image_size}px b{cfg['batch_size']} (rearranger)", (R, D), sample


def _semia(size, device, batch, prec):
    from nbsyn.models import semia as M

    cfg = _preset(M, size)
    if str(size) == "cpu":
        h, w = cfg["image_size"], cfg["image_size"] * 4 // 3
    else:
        h = w = cfg["image_size"]
    img, lab, _ = M.render_scene_edits(h, w)
    classes = int(lab.max()) + 1
    G, D, S = M.build_semia(cfg, classes, h)
    G, D, S = G.to(device), D.to(device), S.to(device)
    opts = [torch.optim.Adam(m.parameters(), lr, betas=(0.0, 0.9))
            for m, lr in ((G, cfg["lr_g"]), (D, cfg["lr_d"]), (S, cfg["lr_s"]))]
    step = M.make_semia_step(G, D, S, opts, img.to(device), lab.to(device), cfg,
                             generator=torch.Generator().manual_seed(0))
    I, P = img[None].to(device), lab[None].to(device)
    return step, f"{h}x{w} b1 ({cfg['g_steps']} G steps)", (G, D, S), lambda: G(I, P, P.flip(-1)).image


BUILDERS = {
    "dcgan": _dcgan, "oasis": _oasis_like("OASIS"), "spade": _oasis_like("SPADE+ D"), "sivgan": _sivgan,
    "osmis": _osmis, "stylegan2": _stylegan2, "ssr": _ssr, "fewshot_sis": _fewshot_sis, "cat": _cat,
    "sis_uncond": _sis_uncond, "semia": _semia,
}


def build(model: str, size, device="cpu", batch: int | None = None, amp: str = "off", channels_last: bool = False,
          with_sample: bool = False):
    """(step_fn, description, modules[, sample]) of one configuration, with ``amp`` and ``channels_last``."""
    from nbsyn.amp import Precision, autocast_step

    if model not in BUILDERS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    prec = Precision(amp, device)
    if prec.mode == "fp16" and model not in FP16_MODELS:
        raise ValueError(f"fp16 needs a scaler-aware step; {model} has bf16 only")
    torch.manual_seed(0)
    step, desc, modules, sample = BUILDERS[model](size, torch.device(device), batch, prec)
    if channels_last:
        for m in modules:
            m.to(memory_format=torch.channels_last)
    if model not in FP16_MODELS:  # OASIS / SPADE apply the precision inside their step
        step = autocast_step(step, prec)
    return (step, desc, modules, sample) if with_sample else (step, desc, modules)


# ---------------------------------------------------------------------------------------------
# Measuring one configuration (in a child process) and the table
# ---------------------------------------------------------------------------------------------

def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> bool:
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model, size, device="cpu", batch=None, steps=3, warmup=1, amp="off", channels_last=False) -> dict:
    dev = torch.device(device)
    step, desc, _ = build(model, size, device, batch, amp, channels_last)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        _reset_peak_rss()
        base = _rss_mib()
    times, losses = [], {}
    for i in range(warmup + steps):
        t = time.perf_counter()
        losses = step(i)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = _peak_rss_mib() - base
    return {"model": model, "size": str(size), "config": desc, "amp": amp, "channels_last": channels_last,
            "s_per_step": statistics.median(times), "peak_mib": peak,
            "finite": all(torch.isfinite(torch.tensor(float(v))) for v in losses.values())}


def _child(args) -> dict:
    cmd = [sys.executable, "-m", "nbsyn.bench", "--child", json.dumps(args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {**args, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| model | size | configuration | amp | channels_last | s / step | peak MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | error: {r['error'][:80]} | {r['amp']} | "
                         f"{r['channels_last']} | - | - |")
            continue
        flag = "" if r["finite"] else " (non-finite loss)"
        lines.append(f"| {r['model']} | {r['size']} | {r['config']}{flag} | {r['amp']} | "
                     f"{'yes' if r['channels_last'] else 'no'} | {r['s_per_step']:.3f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m nbsyn.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--sizes", default="cpu,64", help="comma list of cpu, tiny, or pixel sizes such as 64,128,256")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=None, help="override every configuration's batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--amp", default=None, help="comma list of off, bf16, fp16 (default: off; on CUDA off,bf16)")
    p.add_argument("--channels-last", default=None, choices=("no", "yes", "both"),
                   help="default: no on the CPU, both on CUDA")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        args = json.loads(a.child)
        torch.set_num_threads(args.pop("threads"))
        print(json.dumps(measure(**args)))
        return []
    cuda = a.device.startswith("cuda")
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    amps = (a.amp or ("off,bf16" if cuda else "off")).split(",")
    cl = {"no": [False], "yes": [True], "both": [False, True]}[a.channels_last or ("both" if cuda else "no")]
    load = os.getloadavg()
    print(f"# nbsyn.bench: torch {torch.__version__}, device {a.device}, {a.threads} thread(s), "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    rows = []
    for model in models:
        for size in a.sizes.split(","):
            size = size.strip()
            for amp in amps:
                if amp == "fp16" and model not in FP16_MODELS:
                    continue
                for channels_last in cl:
                    row = _child(dict(model=model, size=size, device=a.device, batch=a.batch, steps=a.steps,
                                      warmup=a.warmup, amp=amp, channels_last=channels_last, threads=a.threads))
                    rows.append({**row, "model": model, "size": size, "amp": amp, "channels_last": channels_last})
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
