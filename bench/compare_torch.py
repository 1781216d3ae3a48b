#!/usr/bin/python3
"""ddpmc against PyTorch eager on this machine, side by side, in one run.

    /usr/bin/python3 bench/compare_torch.py            # full run: 2 rounds, about 12 minutes on 2 cores
    /usr/bin/python3 bench/compare_torch.py --quick    # smoke run (well under a minute)
    /usr/bin/python3 bench/compare_torch.py --isa avx2 # both sides held to AVX2 on a CPU with more

Workloads (see bench/README.md for the details and the fairness notes):
  * moons MLP (models/moons.ddpm), batch 256, 1 and 2 threads:
      - training step: Algorithm 1 (x0 batch, t and eps drawn, x_t formed, forward,
        MSE loss, backward, AdamW lr 1e-3, EMA of the weights with decay 0.999);
      - sampler step: one DDPM ancestral step (net forward + update).
  * fashion U-Net (models/fashion_unet.ddpm, 691,681 parameters), batch 64, 1 and
    2 threads: the same two workloads.

Every workload is measured --rounds times (default 2), PyTorch and ddpmc alternating, and
each side's timed blocks are pooled over the rounds.

Each PyTorch figure in the table is the fastest of the configurations a user could
pick for that thread count (OMP_NUM_THREADS=T; at 2 threads also OpenBLAS held to 1
and the untouched default; ATEN_CPU_CAPABILITY=avx512; for the U-Net also
channels_last); all are listed.

Instruction sets (--isa): the script reads the CPU's flags from /proc/cpuinfo and skips the
PyTorch configurations the CPU cannot run (ATEN_CPU_CAPABILITY=avx512 without avx512f/bw/vl/dq:
ATen trusts the variable and would die of SIGILL), saying which and why; a configuration whose
worker dies anyway is reported as failed and the run goes on. --isa avx2 holds both sides to
AVX2: the ddpmc modules are compiled with DDPMC_MARCH=x86-64-v3, PyTorch runs with
ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, DNNL_MAX_CPU_ISA=AVX2 and OPENBLAS_CORETYPE=Haswell,
and a probe process checks at start (ONEDNN_VERBOSE=1) that the cap took, else the script stops.

PyTorch runs in child processes of this script with a clean environment: the
machine-specific OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed, and the
thread count is set the way a user does it (OMP_NUM_THREADS=T, which OpenBLAS
also reads, plus torch.set_num_threads(T)). ddpmc runs are its own command-line
tools, ddpm-train and ddpm-sample, from the build directory.

Output: a markdown report on stdout and in bench/results/compare_torch.md.
"""

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
# Machine-specific settings of this VM that a normal user's environment does not have.
SCRUB_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Thread settings that this script controls itself; inherited values are dropped.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS")
# Instruction-set settings that this script controls itself (--isa); inherited values are dropped.
ISA_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_VERBOSE", "DNNL_VERBOSE")
# The /proc/cpuinfo flags that code built for each instruction set needs. ATen's AVX512 kernels are
# compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma, its AVX2 kernels with -mavx2 -mfma;
# x86-64-v3 is the -march that --isa avx2 gives the ddpmc modules (abm is how the kernel names LZCNT).
ISA_NEEDS = {
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma"),
    "avx2": ("avx2", "fma"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
}
# --isa avx2: PyTorch's own kernels (ATen), its convolutions (oneDNN, which reads either name) and
# its matmuls (OpenBLAS: Haswell is its AVX2+FMA kernel set) held to AVX2; the ddpmc modules are
# compiled for DDPMC_MARCH.
AVX2_TORCH_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
                  "OPENBLAS_CORETYPE": "Haswell"}
AVX2_MARCH = "x86-64-v3"
TORCH_INSTALL = "apt-get install python3-torch python3-numpy libopenblas0-pthread"
T_STEPS = 1000  # diffusion steps of both models
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------
# PyTorch side (runs only in the worker subprocess)
# ----------------------------------------------------------------------------

def worker_main(cfg):
    """Runs the PyTorch workloads of one (model, threads, variant) config and
    prints one JSON line prefixed with RESULT."""
    try:
        import numpy as np
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        print(f"compare_torch.py: error: cannot import PyTorch/numpy ({e}); install them with: "
              f"{TORCH_INSTALL}", file=sys.stderr)
        return 3

    if cfg["set_threads"]:
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    info = {"torch_threads": torch.get_num_threads(), "openblas": openblas_info(),
            "aten_capability": torch_cpu_capability(torch)[0]}

    # --- schedule (linear beta 1e-4..0.02, T = 1000), 1-based: index 0 is t = 0 ---
    T = T_STEPS
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    beta = np.concatenate([[0.0], betas])
    alpha = np.concatenate([[1.0], alphas])
    abar = np.concatenate([[1.0], abar])
    beta_tilde = np.zeros(T + 1)
    beta_tilde[1:] = beta[1:] * (1.0 - abar[:-1]) / (1.0 - abar[1:])
    sqrt_abar = torch.tensor(np.sqrt(abar), dtype=torch.float32)
    sqrt_1m_abar = torch.tensor(np.sqrt(1.0 - abar), dtype=torch.float32)
    # DDPM step coefficients as Python floats (one t per step).
    c_eps = [float(beta[t] / math.sqrt(1.0 - abar[t])) if t > 0 else 0.0 for t in range(T + 1)]
    inv_sqrt_alpha = [float(1.0 / math.sqrt(alpha[t])) for t in range(T + 1)]
    sigma = [float(math.sqrt(beta_tilde[t])) for t in range(T + 1)]

    # --- layers, with std.ddpm's initialisation: weight and bias U(+-1/sqrt(fan_in)) ---
    def init_uniform(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.uniform_(m.bias, -bound, bound)

    def sinusoidal(t, freqs):
        a = t.to(torch.float32)[:, None] * freqs[None, :]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)

    def make_freqs(size):
        half = size // 2
        return torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))

    class MoonsMLP(nn.Module):
        # [x (2); sinusoidal(t, 64)] -> 128 -> 128 -> 128 -> 2, SiLU (models/moons.ddpm)
        def __init__(self):
            super().__init__()
            self.register_buffer("freqs", make_freqs(64))
            self.l1 = nn.Linear(2 + 64, 128)
            self.l2 = nn.Linear(128, 128)
            self.l3 = nn.Linear(128, 128)
            self.l4 = nn.Linear(128, 2)

        def forward(self, x, t):
            h = torch.cat([x, sinusoidal(t, self.freqs)], dim=1)
            h = F.silu(self.l1(h))
            h = F.silu(self.l2(h))
            h = F.silu(self.l3(h))
            return self.l4(h)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, temb=128):
            super().__init__()
            self.gn1 = nn.GroupNorm(8, cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.temb = nn.Linear(temb, cout)
            self.gn2 = nn.GroupNorm(8, cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, emb):
            h = self.conv1(F.silu(self.gn1(x)))
            h = h + self.temb(emb)[:, :, None, None]
            h = self.conv2(F.silu(self.gn2(h)))
            return self.skip(x) + h

    class Up(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, x):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class FashionUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("freqs", make_freqs(32))
            self.t1 = nn.Linear(32, 128)
            self.t2 = nn.Linear(128, 128)
            self.conv_in = nn.Conv2d(1, 32, 3, padding=1)
            self.rb1 = nn.ModuleList([ResBlock(32, 32), ResBlock(32, 32)])
            self.down1 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.rb2 = nn.ModuleList([ResBlock(64, 64), ResBlock(64, 64)])
            self.down2 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
            self.rb3 = ResBlock(64, 64)
            self.up1 = Up(64, 64)
            self.rb4 = nn.ModuleList([ResBlock(128, 64), ResBlock(64, 64)])
            self.up2 = Up(64, 32)
            self.rb5 = nn.ModuleList([ResBlock(64, 32), ResBlock(32, 32)])
            self.gn_out = nn.GroupNorm(8, 32)
            self.conv_out = nn.Conv2d(32, 1, 3, padding=1)

        def forward(self, x, t):
            emb = F.silu(self.t2(F.silu(self.t1(sinusoidal(t, self.freqs)))))
            h = self.conv_in(x)                       # 32 @ 28
            for rb in self.rb1:
                h = rb(h, emb)
            s28 = h
            h = self.down1(h)                         # 64 @ 14
            for rb in self.rb2:
                h = rb(h, emb)
            s14 = h
            h = self.down2(h)                         # 64 @ 7
            h = self.rb3(h, emb)
            h = torch.cat([self.up1(h), s14], dim=1)  # 128 @ 14
            for rb in self.rb4:
                h = rb(h, emb)
            h = torch.cat([self.up2(h), s28], dim=1)  # 64 @ 28
            for rb in self.rb5:
                h = rb(h, emb)
            return self.conv_out(F.silu(self.gn_out(h)))

    # --- data ---
    g = torch.Generator().manual_seed(1)
    if cfg["model"] == "moons":
        # The same distribution as runtime/data2d.cpp, drawn once (like sklearn's
        # make_moons); each step picks a random batch of it.
        N = 100_000
        u = math.pi * torch.rand(N, generator=g)
        outer = torch.arange(N) % 2 == 0
        x = torch.where(outer, torch.cos(u), 1.0 - torch.cos(u))
        y = torch.where(outer, torch.sin(u), 0.5 - torch.sin(u))
        pts = torch.stack([x, y], dim=1) + 0.05 * torch.randn(N, 2, generator=g)
        dataset = (pts - torch.tensor([0.501, 0.250])) / torch.tensor([0.868, 0.497])
        get_batch = lambda idx: dataset[idx]  # noqa: E731
        net = MoonsMLP()
        B = 256
        data_note = "moons, 100k points drawn once; a random batch per step"
    else:
        images = None
        f = FASHION_DIR / "train-images-idx3-ubyte.gz"
        if f.exists():
            import gzip
            with gzip.open(f, "rb") as fh:
                raw = fh.read()
            images = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=16).copy()).view(-1, 1, 28, 28)
            data_note = f"Fashion-MNIST {f} ({images.shape[0]} images, uint8 -> [-1, 1] per batch)"
        else:
            images = torch.randint(0, 256, (10000, 1, 28, 28), dtype=torch.uint8, generator=g)
            data_note = f"random images ({f} not found)"
        dataset = images
        get_batch = lambda idx: dataset[idx].to(torch.float32) / 127.5 - 1.0  # noqa: E731
        N = dataset.shape[0]
        net = FashionUNet()
        B = 64
    net.apply(init_uniform)
    if cfg.get("channels_last"):
        # NHWC activations: oneDNN's convolutions then skip their layout conversions.
        net = net.to(memory_format=torch.channels_last)
        nchw_batch = get_batch
        get_batch = lambda idx: nchw_batch(idx).contiguous(memory_format=torch.channels_last)  # noqa: E731
    n_params = sum(p.numel() for p in net.parameters())
    data_shape = (B,) + tuple(get_batch(torch.zeros(1, dtype=torch.long)).shape[1:])
    bshape = (B,) + (1,) * (len(data_shape) - 1)

    # --- training step (Algorithm 1 + AdamW + EMA) ---
    params = [p for p in net.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=cfg["foreach"])
    ema = [p.detach().clone() for p in params]
    ema_decay = 0.999

    def train_step():
        x0 = get_batch(torch.randint(0, N, (B,)))
        t = torch.randint(1, T + 1, (B,))
        eps = torch.randn_like(x0)
        xt = sqrt_abar[t].view(bshape) * x0 + sqrt_1m_abar[t].view(bshape) * eps
        loss = F.mse_loss(net(xt, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, ema_decay)
            torch._foreach_add_(ema, params, alpha=1.0 - ema_decay)
        return loss

    # --- sampler step (Algorithm 2, one ancestral step; sigma_t^2 = beta_tilde_t) ---
    fresh = (lambda: torch.randn(data_shape).contiguous(memory_format=torch.channels_last)) \
        if cfg.get("channels_last") else (lambda: torch.randn(data_shape))
    state = {"x": fresh(), "t": T}

    def sampler_step():
        t = state["t"]
        x = state["x"]
        with torch.no_grad():
            eps = net(x, torch.full((B,), t, dtype=torch.long))
            x = (x - c_eps[t] * eps) * inv_sqrt_alpha[t] + sigma[t] * torch.randn_like(x)
        if t > 1:
            state["x"], state["t"] = x, t - 1
        else:  # a new chain, so values stay in range however many steps are timed
            state["x"], state["t"] = fresh(), T

    def measure(fn, warmup, n, reps):
        for _ in range(warmup):
            fn()
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            rates.append(n / (time.perf_counter() - t0))
        return rates

    res = {"config": cfg, "info": info, "params": n_params, "data": data_note, "batch": B}
    if cfg.get("minutes") is not None:  # bench/e2e_minutes.py: train for a wall-clock budget instead
        return timed_training(cfg, train_step, res, torch.__version__)
    w = cfg["work"]
    res["train"] = measure(train_step, w["train_warmup"], w["train_n"], w["reps"])
    net.eval()
    res["sample"] = measure(sampler_step, w["sample_warmup"], w["sample_n"], w["reps"])
    res["train_block"] = w["train_n"]
    res["sample_block"] = w["sample_n"]
    import resource
    res["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # The number of OpenBLAS threads after the run (torch must not have changed it).
    res["info"]["openblas_after"] = openblas_info().get("threads")
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def timed_training(cfg, train_step, res, torch_version):
    """bench/e2e_minutes.py's worker mode: training steps, one after the other, until
    cfg["minutes"] of wall time have passed (the clock starts after the model and the data
    are ready). Like ddpm-train --minutes, the budget is checked after each completed step,
    so the step that crosses it is the last one and counts. Progress on stderr once a
    minute; prints one JSON line prefixed with RESULT."""
    budget = 60.0 * float(cfg["minutes"])
    every = float(cfg.get("progress_s", 60.0))
    losses = []
    n, last = 0, (0, 0.0)
    t0 = time.perf_counter()
    next_report = every
    while True:
        losses.append(float(train_step()))
        n += 1
        el = time.perf_counter() - t0
        if el >= next_report:
            tail = losses[-50:]
            print(f"torch: {el / 60:.1f} min: {n} steps, {n / el:.2f} steps/s (last interval "
                  f"{(n - last[0]) / (el - last[1]):.2f}), loss {sum(tail) / len(tail):.4f}",
                  file=sys.stderr, flush=True)
            last = (n, el)
            next_report += every
        if el > budget:
            break
    tail = losses[-50:]
    finite = [x for x in losses if math.isfinite(x)]
    import resource
    res.update(steps=n, seconds=el, torch_version=torch_version, loss_last50=sum(tail) / len(tail),
               loss_first50=sum(losses[:50]) / len(losses[:50]), nonfinite_losses=len(losses) - len(finite),
               maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    res["info"]["openblas_after"] = openblas_info().get("threads")
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def openblas_info():
    """The OpenBLAS that the process has loaded: its build config, core and thread count."""
    import ctypes
    try:
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_corename.restype = ctypes.c_char_p
        return {"config": ob.openblas_get_config().decode(), "core": ob.openblas_get_corename().decode(),
                "threads": ob.openblas_get_num_threads()}
    except (OSError, AttributeError) as e:
        return {"error": str(e)}


def torch_cpu_capability(torch):
    """The instruction set of ATen's own CPU kernels, as this process's torch picked it (it reads
    ATEN_CPU_CAPABILITY), and where that came from."""
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        return cpu.get_cpu_capability(), "torch.backends.cpu.get_cpu_capability()"
    m = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    return (m.group(1) if m else "?"), ("read from torch.__config__.show(); this torch has no "
                                        "torch.backends.cpu.get_cpu_capability()")


def probe_main():
    """Prints what PyTorch looks like in the clean environment, without touching threads, then
    runs one oneDNN convolution (with ONEDNN_VERBOSE=1 in the environment the parent gives it,
    oneDNN prints its ISA and the implementation it ran on stdout)."""
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        print(f"compare_torch.py: error: cannot import PyTorch/numpy ({e}); install them with: "
              f"{TORCH_INSTALL}", file=sys.stderr)
        return 3
    show = torch.__config__.show()
    cap, cap_source = torch_cpu_capability(torch)
    info = {"version": torch.__version__, "default_threads": torch.get_num_threads(),
            "show": show, "openblas": openblas_info(), "aten_capability": cap, "aten_capability_source": cap_source}
    # A 3x3 convolution of a U-Net shape; PyTorch hands a batch of 8 float NCHW to oneDNN.
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    with torch.no_grad():
        conv(torch.randn(8, 16, 14, 14))
    sys.stdout.flush()
    print("PROBE " + json.dumps(info), flush=True)
    return 0


# ----------------------------------------------------------------------------
# Orchestration (parent process: never imports torch)
# ----------------------------------------------------------------------------

class Fail(Exception):
    pass


def torch_env(threads, openblas_threads=None, extra=None, drop=()):
    """The environment of a PyTorch worker: the inherited one minus the machine-specific
    OpenBLAS settings, inherited thread settings and the variables in `drop`;
    OMP_NUM_THREADS=threads (OpenBLAS's pthread build falls back to OMP_NUM_THREADS when
    OPENBLAS_NUM_THREADS is unset); then the variables in `extra`."""
    removed = tuple(SCRUB_VARS) + tuple(THREAD_VARS) + tuple(drop)
    env = {k: v for k, v in os.environ.items() if k not in removed}
    changes = [f"-u {k}" for k in removed if k in os.environ and k not in (extra or {})]
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        changes.append(f"OMP_NUM_THREADS={threads}")
    if openblas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(openblas_threads)
        changes.append(f"OPENBLAS_NUM_THREADS={openblas_threads}")
    for k, v in (extra or {}).items():
        env[k] = v
        changes.append(f"{k}={v}")
    return env, changes


TMP_DIR = None  # shown as TMP in the printed commands
TOOLS_SHOWN = None  # (snapshot dir, the build's tools dir it was copied from)


def cmd_str(changes, argv):
    if TOOLS_SHOWN:
        argv = [str(a).replace(TOOLS_SHOWN[0], TOOLS_SHOWN[1]) for a in argv]
    if TMP_DIR:
        argv = [str(a).replace(TMP_DIR, "TMP") for a in argv]
    rel = [os.path.relpath(a, REPO) if isinstance(a, str) and a.startswith(str(REPO) + "/") else str(a)
           for a in argv]
    return " ".join(["env"] + changes + [shlex.quote(a) for a in rel]) if changes else \
        " ".join(shlex.quote(a) for a in rel)


def exit_reason(returncode):
    """'exit code N', or for a child killed by a signal (negative return code) its name."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    hint = ": an instruction this CPU does not have" if -returncode == signal.SIGILL else ""
    return f"killed by {name} (signal {-returncode}){hint}"


def run(argv, env, timeout, what):
    try:
        p = subprocess.run([str(a) for a in argv], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"{what} took longer than {timeout} s; is the machine overloaded?")
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-8:])
        raise Fail(f"{what} failed ({exit_reason(p.returncode)})" + (f":\n{tail}" if tail else ""))
    return p


class WorkerFail(Fail):
    """A PyTorch worker that died or printed no result; `command` is how it was run."""
    def __init__(self, msg, command):
        super().__init__(msg)
        self.command = command


def torch_worker(cfg, env, changes, timeout):
    argv = [sys.executable, str(SCRIPT), "--worker", json.dumps(cfg, separators=(",", ":"))]
    command = cmd_str(changes, argv[:3]) + " '<config>'"
    try:
        p = run(argv, env, timeout, f"the PyTorch worker ({cfg['model']}, {cfg['threads']} threads)")
    except Fail as e:
        raise WorkerFail(str(e), command)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["command"] = command
            return res
    raise WorkerFail(f"the PyTorch worker printed no result:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}", command)


def ddpmc_env(march=None):
    """ddpmc does not use OpenBLAS; it gets the same cleaned environment all the same.
    march: None keeps an inherited DDPMC_MARCH, "native" removes it (the modules are then
    compiled for -march=native), anything else sets DDPMC_MARCH to it."""
    env, changes = torch_env(None)
    if march == "native":
        if "DDPMC_MARCH" in env:
            del env["DDPMC_MARCH"]
            changes.append("-u DDPMC_MARCH")
    elif march:
        env["DDPMC_MARCH"] = march
        changes.append(f"DDPMC_MARCH={march}")
    return env, changes


def pool_round(pooled, results):
    """Adds one round's measurements to the pooled ones: every PyTorch configuration's timed blocks,
    ddpmc's metrics windows (each round's first, warm-up window dropped) and sampler runs. The
    report's medians and spreads are then over all rounds."""
    for key, r in results.items():
        if key not in pooled:
            pooled[key] = r
            continue
        p = pooled[key]
        old = dict(p["configs"])
        for label, c in r["configs"]:
            o = old.get(label)
            if o is None or "failed" in c:
                continue
            if "failed" in o:  # failed in an earlier round, measured now: take this round's
                o.clear()
                o.update(c)
                continue
            o["train"] += c["train"]
            o["sample"] += c["sample"]
        ok = [c for _, c in p["configs"] if "failed" not in c]  # as run_torch picks it
        p["torch"] = ok[0] if ok else None
        if "ddpmc_train" in r and "ddpmc_train" in p:
            pt, rt = p["ddpmc_train"], r["ddpmc_train"]
            pt["windows"] += rt["windows"][1:]
            if "builtin" in pt and "builtin" in rt:
                pt["builtin"]["windows"] += rt["builtin"]["windows"][1:]
            p["ddpmc_sample"]["rates"] += r["ddpmc_sample"]["rates"]
            p["ddpmc_sample"]["calls"] = r["ddpmc_sample"]["calls"]
        elif "ddpmc_train" in r:
            p.update(ddpmc_train=r["ddpmc_train"], ddpmc_sample=r["ddpmc_sample"])
            p.pop("ddpmc_na", None)


def write_moons_table(path, n=100_000, seed=1):
    """The PyTorch worker's moons data as ddpm-train reads it: the same recipe (runtime/data2d.cpp's
    distribution, standardised), n points drawn once, float32 [n, 2] .npy. ddpm-train then picks a
    random batch of rows per step, as the PyTorch loop indexes its dataset tensor."""
    import numpy as np
    rng = np.random.default_rng(seed)
    u = math.pi * rng.random(n)
    outer = np.arange(n) % 2 == 0
    x = np.where(outer, np.cos(u), 1.0 - np.cos(u))
    y = np.where(outer, np.sin(u), 0.5 - np.sin(u))
    pts = np.stack([x, y], axis=1) + 0.05 * rng.standard_normal((n, 2))
    pts = (pts - np.array([0.501, 0.250])) / np.array([0.868, 0.497])
    np.save(path, pts.astype(np.float32))
    return path


def ddpmc_train(tools, model, data, batch, threads, steps, log_every, out_dir, cache_dir, march=None):
    env, changes = ddpmc_env(march)
    argv = [tools / "ddpm-train", str(REPO / model), "--data", data, "--steps", str(steps),
            "--batch", str(batch), "--threads", str(threads), "--out", str(out_dir), "--log-every", str(log_every),
            "--ckpt-every", "0", "--grad-clip", "0", "--lr", "0.001", "--weight-decay", "0.01",
            "--ema-decay", "0.999", "--cache-dir", str(cache_dir)]
    p = run(argv, env, 600, f"ddpm-train {model} ({threads} threads)")
    m = re.search(r"trained (\d+) steps in ([\d.]+) s \(([\d.]+) steps/s\)", p.stderr)
    if not m:
        raise Fail(f"cannot find the 'trained N steps in X s (R steps/s)' line in ddpm-train's output:\n"
                   f"{p.stderr[-1500:]}")
    pm = re.search(r": (\d+) parameters, batch", p.stderr)
    # Window rates from the elapsed_s column (ms resolution) of consecutive metrics lines.
    windows, prev = [], (0, 0.0)
    with open(Path(out_dir) / "metrics.jsonl") as fh:
        for line in fh:
            rec = json.loads(line)
            step, el = int(rec["step"]), float(rec["elapsed_s"])
            if el > prev[1]:
                windows.append((step - prev[0]) / (el - prev[1]))
            prev = (step, el)
    return {"final_line": m.group(0), "end_to_end": int(m.group(1)) / max(float(m.group(2)), 1e-9),
            "params": int(pm.group(1)) if pm else None,
            "printed_rate": float(m.group(3)), "windows": windows,
            "command": cmd_str(changes, [str(a) for a in argv]),
            "module_avx512": avx512_instructions(Path(out_dir) / "module.so")}


def ddpmc_sample(tools, run_dir, batch, threads, n, reps, out_npy, steps=T_STEPS, march=None):
    env, changes = ddpmc_env(march)
    argv = [tools / "ddpm-sample", str(run_dir), "--sampler", "ddpm", "-n", str(n), "--batch", str(batch),
            "--threads", str(threads), "--out", str(out_npy), "--no-png", "-q"]
    if steps != T_STEPS:
        argv[4:4] = ["--steps", str(steps)]
    rates, lines = [], []
    calls = (n // batch) * steps
    for _ in range(reps):
        p = run(argv, env, 600, f"ddpm-sample ({threads} threads)")
        m = re.search(r"sampled .* \((\d+) steps, .*\) in ([\d.]+) s", p.stderr)
        if not m:
            raise Fail(f"cannot find the 'sampled ... in X s' line in ddpm-sample's output:\n{p.stderr[-1500:]}")
        if int(m.group(1)) != steps:
            raise Fail(f"ddpm-sample ran {m.group(1)} steps, expected {steps}")
        rates.append(calls / float(m.group(2)))
        lines.append(m.group(0))
    return {"rates": rates, "lines": lines, "calls": calls, "command": cmd_str(changes, [str(a) for a in argv])}


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo, or None if they cannot be read."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def missing_flags(flags, isa):
    """The flags of ISA_NEEDS[isa] this CPU lacks (all of them if the flags are unknown)."""
    return [f for f in ISA_NEEDS[isa] if flags is None or f not in flags]


def isa_summary(flags):
    """What the CPU has, in a few words: 'AVX-512 (avx512f avx512bw ...), AVX2, FMA'."""
    if flags is None:
        return "unknown (no flags line in /proc/cpuinfo)"
    parts = []
    a512 = sorted(f for f in flags if f.startswith("avx512"))
    if not missing_flags(flags, "avx512"):
        others = len(a512) - len([f for f in ISA_NEEDS["avx512"] if f.startswith("avx512")])
        parts.append("AVX-512 (avx512f bw vl dq" + (f" and {others} more avx512 flags" if others else "") + ")")
    elif a512:
        parts.append(f"partial AVX-512 ({' '.join(a512)}; lacks {', '.join(missing_flags(flags, 'avx512'))})")
    else:
        parts.append("no AVX-512")
    parts.append("AVX2" if "avx2" in flags else "no AVX2")
    parts.append("FMA" if "fma" in flags else "no FMA")
    return ", ".join(parts)


# Instructions that only AVX-512 (EVEX) code has, in objdump's AT&T syntax: zmm, mask or
# xmm/ymm16-31 registers, embedded broadcast or rounding, or an EVEX-only mnemonic (on xmm/ymm).
EVEX_OPERAND = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(?:1[6-9]|2[0-9]|3[01])\b|\{1to\d+\}|\{r[nduz]-sae\}|\{sae\}")
EVEX_MNEMONIC = re.compile(
    r"(?:vpternlog|vperm[it]2|vpermw|vpermb|vpro[lr]v?[dq]|vpmov(?:u?s)?[qdw][bwd]|vpmov[bwdq]2m|vpmovm2|"
    r"vrndscale|vrange|vreduce|vgetexp|vgetmant|vscalef|vfixupimm|vfpclass|vrcp14|vrsqrt14|vrcp28|vrsqrt28|"
    r"vcompress|vexpand|vpcompress|vpexpand|vpconflict|vplzcnt|vpopcnt|valign[dq]|vdbpsadbw|vpmultishift|"
    r"vpsllvw|vpsrlvw|vpsravw|vpsraq|vpmullq|vpabsq|vp(?:max|min)[su]q|vcvtt?p[sd]2u?qq|vcvtt?p[sd]2udq|"
    r"vcvtu?qq2p[sd]|vcvtudq2p[sd]|vcvtt?s[sd]2usi|vcvtusi2s[sd]|vextract[fi](?:32x4|32x8|64x2|64x4)|"
    r"vinsert[fi](?:32x4|32x8|64x2|64x4)|vbroadcast[fi](?:32x2|32x4|32x8|64x2|64x4)|vshuf[fi](?:32x4|64x2)|"
    r"vpbroadcastm|vptestn?m|vpcmpu?[bwdq]\b|vdbpsadbw|k(?:mov|and|or|xor|not|shift|test|unpck|add)[bwdq])")


def avx512_instructions(path):
    """(AVX-512 instructions, all instructions) in an ELF file's code, by objdump; None if
    objdump is missing or fails."""
    if not shutil.which("objdump") or not Path(path).exists():
        return None
    try:
        p = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-M", "att", str(path)], capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode != 0:
        return None
    n = total = 0
    for line in p.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not line.startswith(" "):
            continue
        ins = parts[-1].strip()
        if not ins or ins.startswith("(bad)"):
            continue
        total += 1
        if EVEX_OPERAND.search(ins) or EVEX_MNEMONIC.match(ins):
            n += 1
    return [n, total]


def fmt_avx512(counts):
    if counts is None:
        return "not checked (no objdump)"
    return f"{counts[0]:,} of {counts[1]:,} instructions are AVX-512"


def onednn_verbose(text):
    """From ONEDNN_VERBOSE=1 output: (the 'isa:' info line's value, the first convolution's
    implementation, that whole exec line)."""
    isa = impl = line = None
    for ln in text.splitlines():
        m = re.match(r"(?:onednn|dnnl)_verbose,info,cpu,isa:(.*)$", ln)
        if m and isa is None:
            isa = m.group(1).strip()
        m = re.match(r"(?:onednn|dnnl)_verbose,exec,cpu,convolution,([^,]+),", ln)
        if m and impl is None:
            impl, line = m.group(1), ln.strip()
    return isa, impl, line


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    if len(xs) < 2:
        return ""
    m = median(xs)
    return f"{fmt_rate(min(xs))}–{fmt_rate(max(xs))} (±{100 * (max(xs) - min(xs)) / 2 / m:.0f}%)"


def load1():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_for_load(max_load, minutes, log):
    """Waits until the 1-minute load average is at most max_load (or the time is up)."""
    if max_load <= 0:
        return
    deadline = time.time() + 60 * minutes
    while True:
        l1 = load1()
        if not l1 > max_load:
            log(f"compare_torch: 1-minute load {l1:.2f} <= {max_load}; starting")
            return
        if time.time() > deadline:
            log(f"compare_torch: warning: load is still {l1:.2f} after {minutes} min; measuring anyway")
            return
        log(f"compare_torch: 1-minute load {l1:.2f} > {max_load}; waiting (up to {minutes} min) ...")
        time.sleep(15)


def fmt_rate(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ms(rate):
    return f"{1000.0 / rate:.3g} ms" if rate and rate > 0 else "n/a"


def show_summary(show):
    """The BLAS-related facts from torch.__config__.show()."""
    out = []
    for line in show.splitlines():
        line = line.strip(" -\t")
        if line.startswith("CPU capability usage") or line.startswith("Intel(R) MKL-DNN") or \
                line.startswith("OpenMP") or line.startswith("LAPACK"):
            out.append(line)
        if line.startswith("Build settings"):
            for key in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP"):
                m = re.search(key + r"=([^,]*)", line)
                if m:
                    out.append(f"{key}={m.group(1)}")
    return "; ".join(out)


def torch_configs(model, threads, variants):
    """The PyTorch configurations a user could pick for this thread count:
    (label, env threads, OPENBLAS_NUM_THREADS, set_num_threads, channels_last, extra env).
    Each row of the table compares against the fastest of them. variants=False: only the first."""
    cs = [(f"OMP_NUM_THREADS={threads} (OpenBLAS follows)", threads, None, True, False, None)]
    if threads == 2 and variants:
        cs.append(("OMP_NUM_THREADS=2, OpenBLAS held to 1", 2, 1, True, False, None))
        cs.append(("untouched default (no thread variables, no set_num_threads)", None, None, False, False, None))
    if variants:
        # Debian's build runs its own elementwise kernels at AVX2 unless told otherwise.
        cs.append((f"OMP_NUM_THREADS={threads}, OpenBLAS held to 1, ATEN_CPU_CAPABILITY=avx512", threads, 1, True,
                   False, {"ATEN_CPU_CAPABILITY": "avx512"}))
    if model == "unet" and variants:
        cs.append((f"OMP_NUM_THREADS={threads}, OpenBLAS held to 1, channels_last", threads, 1, True, True, None))
    return cs


def skip_reason(extra, isa, flags):
    """Why a configuration with these extra variables is not run on this CPU at --isa isa, or None.
    ATen trusts ATEN_CPU_CAPABILITY: asked for kernels the CPU cannot run, it dies of SIGILL."""
    cap = (extra or {}).get("ATEN_CPU_CAPABILITY")
    if cap is None or cap == "default":
        return None
    if isa == "avx2" and cap != "avx2":
        return "--isa avx2 holds PyTorch to AVX2"
    if cap not in ISA_NEEDS:
        return f"unknown capability {cap}"
    miss = missing_flags(flags, cap)
    if miss:
        return ("this CPU lacks " + " ".join(miss) if flags is not None else
                "the CPU's flags cannot be read from /proc/cpuinfo") + \
            f", so ATen's {cap.upper()} kernels would die of SIGILL"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(REPO / "build"), help="ddpmc build directory (default: build)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (numbers are rough)")
    ap.add_argument("--rounds", type=int, default=2, metavar="R",
                    help="measure every workload R times, PyTorch and ddpmc alternating, and pool the blocks "
                         "(default 2; noise that lasts seconds then hits both sides)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "compare_torch.md"),
                    help="where to write the markdown report")
    ap.add_argument("--no-unet", action="store_true", help="skip the PyTorch U-Net")
    ap.add_argument("--no-moons", action="store_true", help="skip the moons MLP")
    ap.add_argument("--no-variants", action="store_true",
                    help="measure only OMP_NUM_THREADS=T for PyTorch (skip OpenBLAS held to 1, the untouched default and channels_last)")
    ap.add_argument("--adamw", choices=["foreach", "default"], default="foreach",
                    help="torch AdamW implementation: foreach=True (faster) or 1.13's default (per-tensor loop)")
    ap.add_argument("--wait-load", type=float, default=0.0, metavar="L",
                    help="first wait until the 1-minute load average is at most L (0 = do not wait)")
    ap.add_argument("--wait-minutes", type=float, default=10.0, help="give up waiting after this long")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="native: each side uses what this CPU has (PyTorch configurations the CPU cannot run "
                         "are skipped); avx2: both sides held to AVX2 (ddpmc modules compiled with "
                         f"DDPMC_MARCH={AVX2_MARCH}; PyTorch with "
                         + " ".join(f"{k}={v}" for k, v in AVX2_TORCH_ENV.items()) + ")")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(json.loads(args.worker))
    if args.probe:
        return probe_main()
    try:
        return orchestrate(args)
    except Fail as e:
        print(f"compare_torch.py: error: {e}", file=sys.stderr)
        return 1


def orchestrate(args):
    t_start = time.time()
    build = Path(args.build_dir).resolve()
    for tool in ("ddpm-train", "ddpm-sample"):
        if not os.access(build / "tools" / tool, os.X_OK):
            raise Fail(f"{build / 'tools' / tool} is missing; build first: cmake --build "
                       f"{os.path.relpath(build, REPO) if str(build).startswith(str(REPO)) else build} "
                       f"(or pass --build-dir DIR)")
    q = args.quick
    reps = 3 if q else 7
    moons_work = dict(train_warmup=50 if q else 200, train_n=100 if q else 300,
                      sample_warmup=50 if q else 200, sample_n=200 if q else 500, reps=reps)
    unet_work = dict(train_warmup=1 if q else 2, train_n=1 if q else 3, sample_warmup=1 if q else 3,
                     sample_n=2 if q else 5, reps=3 if q else 5)
    dd_log_every = 200 if q else 500
    dd_steps = dd_log_every * (4 if q else 12)   # the first window is warm-up and is dropped
    dd_sample_n = 256 * (2 if q else 5)          # chunks of 1000 sampler calls at batch 256
    dd_sample_reps = 2 if q else 5
    unet_spec = REPO / "models" / "fashion_unet.ddpm"
    un_log_every = 1 if q else 2
    un_steps = un_log_every * (3 if q else 7)    # first window dropped
    un_sample_steps = 4 if q else 20             # strided DDPM: K sampler calls of the same cost
    un_sample_reps = 2 if q else 3
    foreach = args.adamw == "foreach"
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    wait_for_load(args.wait_load, args.wait_minutes, log)
    t_start = time.time()  # the run time excludes the wait
    load_before = loadavg()
    log(f"compare_torch: load average {load_before}; build dir {build}")
    scrubbed = {k: os.environ[k] for k in SCRUB_VARS if k in os.environ}
    inherited_threads = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    inherited_isa = {k: os.environ[k] for k in ISA_VARS + ("DDPMC_MARCH",) if k in os.environ}
    log("compare_torch: PyTorch runs in subprocesses with " +
        (", ".join(f"{k} (was {v})" for k, v in scrubbed.items()) + " removed" if scrubbed
         else f"a clean environment ({', '.join(SCRUB_VARS)} were not set)") +
        (f"; inherited {inherited_threads} dropped" if inherited_threads else "") +
        (f"; inherited {inherited_isa} dropped (--isa decides)" if inherited_isa else "") +
        "; threads via OMP_NUM_THREADS=T (OpenBLAS follows it) + torch.set_num_threads(T)")

    # --- instruction sets: what the CPU has, what each side is held to, what is skipped ---
    flags = cpu_flags()
    march = AVX2_MARCH if args.isa == "avx2" else "native"
    isa_env = dict(AVX2_TORCH_ENV) if args.isa == "avx2" else {}
    if args.isa == "avx2":
        miss = sorted(set(missing_flags(flags, "avx2") + missing_flags(flags, "x86-64-v3")))
        if miss:
            raise Fail(f"--isa avx2: this CPU ({cpu_model()}) lacks {' '.join(miss)} "
                       f"(/proc/cpuinfo), so it cannot run AVX2 / {AVX2_MARCH} code; run without --isa")
    log(f"compare_torch: CPU {cpu_model()}: {isa_summary(flags)}; --isa {args.isa}: " +
        (f"ddpmc modules compiled with DDPMC_MARCH={AVX2_MARCH}, PyTorch with "
         + " ".join(f"{k}={v}" for k, v in isa_env.items()) if args.isa == "avx2" else
         "ddpmc modules compiled for -march=native, PyTorch with its own choices"))
    do_variants = not args.no_variants and not q
    planned = [("moons", t) for t in (() if args.no_moons else (1, 2))] + \
        [("unet", t) for t in (() if args.no_unet else (1, 2))]
    skipped = {}  # configuration's variables -> (reason, ["moons 1 thr", ...])
    for model, threads in planned:
        for cfg in torch_configs(model, threads, do_variants):
            why = skip_reason(cfg[5], args.isa, flags)
            if why:
                name = " ".join(f"{k}={v}" for k, v in cfg[5].items())
                skipped.setdefault(name, (why, []))[1].append(f"{'U-Net' if model == 'unet' else model} {threads} thr")
    skipped_text = "; ".join(f"`{name}` ({', '.join(where)}): {why}" for name, (why, where) in skipped.items())
    if skipped:
        log(f"compare_torch: skipping PyTorch configuration(s) {skipped_text}")

    # PyTorch as it is in the clean environment (with the --isa cap), before any thread setting;
    # its one convolution with ONEDNN_VERBOSE=1 shows the ISA oneDNN runs at.
    env, changes = torch_env(None, None, dict(isa_env, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1"), drop=ISA_VARS)
    p = subprocess.run([sys.executable, str(SCRIPT), "--probe"], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise Fail((p.stderr.strip().splitlines()[-1] if p.stderr.strip() else
                    f"PyTorch is not usable ({exit_reason(p.returncode)}); install it with: {TORCH_INSTALL}")
                   + (f" (the probe ran with {' '.join(changes)})" if isa_env else ""))
    probe = json.loads(p.stdout.split("PROBE ", 1)[1])
    dnnl_isa, dnnl_impl, dnnl_line = onednn_verbose(p.stdout)
    probe.update(onednn_isa=dnnl_isa, onednn_impl=dnnl_impl, onednn_line=dnnl_line)
    ob_core = probe["openblas"].get("core")
    log(f"compare_torch: PyTorch probe{' under the AVX2 cap' if isa_env else ''}: oneDNN reports "
        f"isa `{dnnl_isa}`, its convolution ran `{dnnl_impl}`; ATen CPU capability {probe['aten_capability']} "
        f"({probe['aten_capability_source'].split(';')[0]}); OpenBLAS core {ob_core}")
    if dnnl_line:
        log(f"compare_torch:   {dnnl_line}")
    if args.isa == "avx2":
        problems = []
        if not dnnl_impl:
            problems.append("oneDNN printed no convolution line with ONEDNN_VERBOSE=1 / DNNL_VERBOSE=1, so the "
                            "cap cannot be verified")
        elif "avx512" in dnnl_impl.lower() or "avx2" not in dnnl_impl.lower():
            problems.append(f"oneDNN ran the convolution with `{dnnl_impl}`, not an avx2 implementation "
                            f"(isa: {dnnl_isa})")
        if str(probe["aten_capability"]).upper() != "AVX2":
            problems.append(f"ATen's CPU capability is {probe['aten_capability']}, not AVX2")
        if ob_core and ob_core.lower() != AVX2_TORCH_ENV["OPENBLAS_CORETYPE"].lower():
            problems.append(f"OpenBLAS runs its {ob_core} kernels, not Haswell")
        if problems:
            raise Fail("--isa avx2: the AVX2 cap did not take (" + "; ".join(problems) + "); the probe ran with "
                       + " ".join(changes))
        log("compare_torch: --isa avx2: the cap took: oneDNN, ATen and OpenBLAS all run AVX2 code")

    global TMP_DIR, TOOLS_SHOWN
    tmp = Path(tempfile.mkdtemp(prefix="compare_torch."))
    TMP_DIR = str(tmp)
    # Run a snapshot of the tools, so that a concurrent rebuild cannot swap them mid-run.
    tools = tmp / "bin"
    tools.mkdir()
    tool_info = []
    for tool in ("ddpm-train", "ddpm-sample"):
        src = build / "tools" / tool
        shutil.copy2(src, tools / tool)
        tool_info.append(f"{tool} built {time.strftime('%Y-%m-%d %H:%M', time.localtime(src.stat().st_mtime))}")
    TOOLS_SHOWN = (str(tools), str(build / "tools"))
    # The tools' own code is built for the target CMake gave it, which DDPMC_MARCH does not change.
    tools_avx512 = {tool: avx512_instructions(tools / tool) for tool in ("ddpm-train", "ddpm-sample")}
    isa = dict(mode=args.isa, cpu=isa_summary(flags), march=march, torch_env=isa_env, skipped=skipped_text,
               tools_avx512=tools_avx512)
    results = {}   # (model, threads) -> dict
    variants = []  # (model, label, result): every PyTorch configuration measured

    def run_torch(model, threads, work, record=True):
        out = []
        for label, et, obt, st, cl, extra in torch_configs(model, threads, do_variants):
            if skip_reason(extra, args.isa, flags):
                continue
            env, changes = torch_env(et, obt, dict(isa_env, **(extra or {})), drop=ISA_VARS)
            cfg = dict(model=model, threads=et or 0, set_threads=st, foreach=foreach, work=work, channels_last=cl)
            log(f"compare_torch: PyTorch {model}, {threads} thread(s): {label} ...")
            load_at_start = loadavg()
            try:
                r = torch_worker(cfg, env, changes, 900)
            except WorkerFail as e:
                why = str(e).splitlines()[0].rstrip(":")
                log(f"compare_torch: PyTorch {model}, {threads} thread(s): {label}: FAILED, {why}; going on "
                    f"without it")
                r = {"failed": why, "command": e.command}
            r["load"] = load_at_start
            out.append((label, r))
            if record:
                variants.append((model, f"{threads} thr: {label}", r))
        ok = [r for _, r in out if "failed" not in r]
        return out, (ok[0] if ok else None)

    def module_check(tr, name):
        counts = tr.get("module_avx512")
        if args.isa == "avx2" and counts and counts[0]:
            log(f"compare_torch: WARNING: the {name} module built with DDPMC_MARCH={march} has "
                f"{fmt_avx512(counts)}")

    pooled = {}
    try:
        for rnd in range(max(1, args.rounds)):
            if args.rounds > 1:
                log(f"compare_torch: round {rnd + 1} of {args.rounds}")
            results = {}
            for threads in (() if args.no_moons else (1, 2)):
                configs, first = run_torch("moons", threads, moons_work, record=rnd == 0)
                results[("moons", threads)] = {"torch": first, "configs": configs}
                log(f"compare_torch: ddpmc moons, {threads} thread(s) ...")
                dd_load = loadavg()
                run_dir = tmp / f"moons-t{threads}-r{rnd}"
                try:
                    # The table's figure: the same data as the PyTorch loop (a table of 100k points, a random
                    # batch of it per step). Also measured: the built-in generator, which draws fresh points
                    # every step (double-precision sin, cos and log per point), work the PyTorch loop skips.
                    table = tmp / "moons_100k.npy"
                    if not table.exists():
                        write_moons_table(table)
                    tr = ddpmc_train(tools, "models/moons.ddpm", str(table), 256, threads, dd_steps, dd_log_every,
                                     run_dir, tmp / "cache", march=march)
                    module_check(tr, "moons")
                    tr["builtin"] = ddpmc_train(tools, "models/moons.ddpm", "moons", 256, threads, dd_steps,
                                                dd_log_every, tmp / f"moons-builtin-t{threads}-r{rnd}", tmp / "cache",
                                                march=march)
                    sa = ddpmc_sample(tools, run_dir, 256, threads, dd_sample_n, dd_sample_reps, tmp / "samples.npy",
                                      march=march)
                    tr["load"] = dd_load
                    results[("moons", threads)].update(ddpmc_train=tr, ddpmc_sample=sa)
                except Fail as e:
                    log(f"compare_torch: ddpmc moons failed; its column is n/a: {e}")
                    results[("moons", threads)]["ddpmc_na"] = str(e).splitlines()[0][:150]
            if not args.no_unet:
                for threads in (1, 2):
                    configs, first = run_torch("unet", threads, unet_work, record=rnd == 0)
                    results[("unet", threads)] = {"torch": first, "configs": configs}
                    if not unet_spec.exists():
                        results[("unet", threads)]["ddpmc_na"] = "not implemented yet"
                        continue
                    log(f"compare_torch: ddpmc U-Net, {threads} thread(s) ...")
                    dd_load = loadavg()
                    run_dir = tmp / f"unet-t{threads}-r{rnd}"
                    try:
                        tr = ddpmc_train(tools, "models/fashion_unet.ddpm", "fashion-mnist", 64, threads, un_steps,
                                         un_log_every, run_dir, tmp / "cache", march=march)
                        tr["load"] = dd_load
                        module_check(tr, "U-Net")
                        if tr["params"] != 691681:
                            raise Fail(f"models/fashion_unet.ddpm has {tr['params']} parameters, not 691,681")
                        sa = ddpmc_sample(tools, run_dir, 64, threads, 64, un_sample_reps, tmp / "samples.npy",
                                          steps=un_sample_steps, march=march)
                        results[("unet", threads)].update(ddpmc_train=tr, ddpmc_sample=sa)
                    except Fail as e:
                        log(f"compare_torch: ddpmc U-Net failed; its column is n/a: {e}")
                        results[("unet", threads)]["ddpmc_na"] = str(e).splitlines()[0][:150]
            pool_round(pooled, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = pooled
    load_after = loadavg()

    report = make_report(args, build, probe, isa, results, variants, scrubbed, load_before, load_after,
                         time.time() - t_start, "; ".join(tool_info), dict(moons=moons_work, unet=unet_work, dd_steps=dd_steps,
                                                     dd_log_every=dd_log_every, dd_sample_n=dd_sample_n,
                                                     dd_sample_reps=dd_sample_reps, un_steps=un_steps,
                                                     un_log_every=un_log_every, un_sample_steps=un_sample_steps,
                                                     un_sample_reps=un_sample_reps))
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"compare_torch: wrote {out}")
    return 0


def make_report(args, build, probe, isa, results, variants, scrubbed, load_before, load_after, elapsed, tool_info,
                work):
    L = []
    ncores = os.cpu_count()
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = ncores
    git = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cs %s"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    ob = probe["openblas"]
    L.append("# ddpmc vs PyTorch eager (CPU, " + ("both sides held to AVX2: --isa avx2" if isa["mode"] == "avx2" else
                                                  "native ISA") + ")"
             + (" — QUICK smoke run, rough numbers" if args.quick else ""))
    L.append("")
    if float(load_before.split()[0]) > 0.5:
        L.append(f"> **Warning:** the machine was busy (1-minute load average {load_before.split()[0]} on {ncores} "
                 f"CPUs) when the run started; other processes distort these numbers, the 2-thread ones most "
                 f"(OpenMP threads spin-wait for a descheduled partner). Re-run with `--wait-load 0.5`.")
        L.append("")
    L.append(f"- Machine: {cpu_model()}, {ncores} logical CPUs ({avail} usable by this process), "
             f"{isa['cpu']}; measured at ISA **{isa['mode']}** (`--isa {isa['mode']}`); "
             f"load average {load_before} before, {load_after} after; run took {elapsed:.0f} s "
             f"on {time.strftime('%Y-%m-%d %H:%M %Z')}.")
    mods = [(f"{'moons' if m == 'moons' else 'U-Net'}", r["ddpmc_train"].get("module_avx512"))
            for (m, t), r in sorted(results.items()) if t == 1 and "ddpmc_train" in r]
    tools_a = "; ".join(f"{t}: {fmt_avx512(c)}" for t, c in isa["tools_avx512"].items())
    if isa["mode"] == "avx2":
        L.append(f"- ISA: `--isa avx2`, both sides held to AVX2 on a CPU that may have more. ddpmc: the modules "
                 f"are compiled with `DDPMC_MARCH={isa['march']}` (objdump: "
                 + ("; ".join(f"{n} module {fmt_avx512(c)}" for n, c in mods) or "no module built")
                 + "). PyTorch: every configuration runs with "
                 + " ".join(f"`{k}={v}`" for k, v in isa["torch_env"].items())
                 + f" (ATen, oneDNN, and OpenBLAS's AVX2 kernels). Checked at start in a probe process: ATen's CPU "
                 f"capability {probe['aten_capability']} ({probe['aten_capability_source']}); with "
                 f"`ONEDNN_VERBOSE=1` oneDNN reported isa `{probe['onednn_isa']}` and ran a 3×3 convolution with "
                 f"`{probe['onednn_impl']}`; OpenBLAS core `{probe['openblas'].get('core', '?')}`. Not changed by "
                 f"`--isa`: the ddpmc tools' own code (optimizer, data, sampler loop), as CMake built it ({tools_a}).")
    else:
        L.append("- ISA: `--isa native`: ddpmc's modules are compiled for `-march=native` (objdump: "
                 + ("; ".join(f"{n} module {fmt_avx512(c)}" for n, c in mods) or "no module built")
                 + f"; tools: {tools_a}); PyTorch picks its own kernels: ATen's CPU capability "
                 f"{probe['aten_capability']} by default, oneDNN isa `{probe['onednn_isa']}` (a 3×3 convolution "
                 f"ran `{probe['onednn_impl']}`), OpenBLAS core `{probe['openblas'].get('core', '?')}`.")
    if isa["skipped"]:
        L.append(f"- Skipped PyTorch configurations: {isa['skipped']}.")
    L.append(f"- PyTorch {probe['version']} ({sys.executable}); torch.__config__.show(): "
             f"{show_summary(probe['show'])}.")
    L.append(f"- BLAS at run time: {ob.get('config', ob.get('error'))}; core `{ob.get('core', '?')}`. "
             f"In the clean environment PyTorch's own default is {probe['default_threads']} intra-op thread(s) "
             f"and OpenBLAS's is {ob.get('threads', '?')} thread(s).")
    L.append(f"- Environment: PyTorch runs in child processes with "
             + (", ".join(f"`{k}={v}`" for k, v in scrubbed.items()) + " removed (machine-specific settings a "
                "normal user does not have)" if scrubbed else "nothing to remove")
             + "; threads T are set with `OMP_NUM_THREADS=T` (OpenBLAS's pthread build reads it too) and "
               "`torch.set_num_threads(T)`. The ddpmc tools get the same cleaned environment and `--threads T`."
             + (" At `--isa avx2` the variables of the ISA line are added (OPENBLAS_CORETYPE=Haswell among them: "
                "there it is the cap, not a leftover)." if isa["mode"] == "avx2" else ""))
    L.append(f"- ddpmc: {build}/tools ({tool_info}; run from a snapshot copy); repository HEAD {git}"
             f"{' (the working tree has uncommitted changes)' if dirty else ''}.")
    L.append("")

    # --- main table ---
    L.append("| workload | threads | PyTorch best steps/s | its configuration | ddpmc steps/s | ratio ddpmc/PyTorch |")
    L.append("|---|---:|---:|---|---:|---:|")
    rows = {}
    for model, name, batch in (("moons", "moons MLP", 256), ("unet", "fashion U-Net", 64)):
        for kind in ("train", "sample"):
            for threads in (1, 2):
                r = results.get((model, threads))
                if r is None:
                    continue
                ok = [(lab, median(c[kind])) for lab, c in r["configs"] if "failed" not in c]
                best_label, pt = max(ok, key=lambda x: x[1]) if ok else \
                    ("every configuration failed: " + "; ".join(dict.fromkeys(c["failed"] for _, c in r["configs"]))
                     if r["configs"] else "none run", None)
                if "ddpmc_train" in r:
                    dd = median(r["ddpmc_train"]["windows"][1:]) if kind == "train" else \
                        median(r["ddpmc_sample"]["rates"])
                else:
                    dd = None
                rows[(model, kind, threads)] = (pt, dd)
                label = f"{name}, {'training step' if kind == 'train' else 'DDPM sampler step'}, batch {batch}"
                L.append(f"| {label} | {threads} | " + (f"{fmt_rate(pt)} ({fmt_ms(pt)})" if pt else "failed")
                         + f" | {best_label} | "
                         + (f"{fmt_rate(dd)} ({fmt_ms(dd)})" if dd else f"n/a ({r.get('ddpmc_na', 'not run')})")
                         + " | "
                         + (f"{dd / pt:.2f}×" if dd and pt else "n/a") + " |")
    L.append("")
    L.append("Medians over timed blocks (spread and block sizes below). Ratio > 1 means ddpmc is faster. "
             "Each PyTorch figure is the fastest of the configurations measured for that thread count "
             "(all of them are listed below).")
    L.append("")

    # --- scaling ---
    L.append("**2-thread vs 1-thread scaling** (steps/s at 2 threads ÷ at 1 thread):")
    L.append("")
    L.append("| workload | PyTorch | ddpmc |")
    L.append("|---|---:|---:|")
    for model, name in (("moons", "moons MLP"), ("unet", "fashion U-Net")):
        for kind in ("train", "sample"):
            a, b = rows.get((model, kind, 1)), rows.get((model, kind, 2))
            if not a or not b:
                continue
            dd = f"{b[1] / a[1]:.2f}×" if a[1] and b[1] else "n/a"
            pt = f"{b[0] / a[0]:.2f}×" if a[0] and b[0] else "n/a"
            L.append(f"| {name}, {'training' if kind == 'train' else 'sampler'} step | {pt} | {dd} |")
    L.append("")

    # --- variants ---
    if variants:
        L.append("**Every PyTorch configuration measured** (the table above uses the fastest per row):")
        L.append("")
        L.append("| workload | configuration | torch threads / OpenBLAS threads | ATen ISA / OpenBLAS core | "
                 "training steps/s | sampler steps/s |")
        L.append("|---|---|---:|---|---:|---:|")
        for model, label, r in variants:
            name = "moons MLP" if model == "moons" else "fashion U-Net"
            if "failed" in r:
                L.append(f"| {name} | {label} | | | **failed**: {r['failed']} | failed |")
                continue
            L.append(f"| {name} | {label} | "
                     f"{r['info']['torch_threads']} / {r['info']['openblas'].get('threads', '?')} | "
                     f"{r['info'].get('aten_capability', '?')} / {r['info']['openblas'].get('core', '?')} | "
                     f"{fmt_rate(median(r['train']))} ({fmt_ms(median(r['train']))}) | "
                     f"{fmt_rate(median(r['sample']))} ({fmt_ms(median(r['sample']))}) |")
        L.append("")

    # --- details ---
    L.append("## How it was measured")
    L.append("")
    mw, uw = work["moons"], work["unet"]
    L.append(f"- **PyTorch training step** (Algorithm 1, what a user's loop does): random batch of x0, "
             f"`t ~ U{{1..1000}}`, `eps = randn`, `x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) eps`, forward, "
             f"`F.mse_loss`, `zero_grad(set_to_none=True)`, backward, `torch.optim.AdamW(lr=1e-3, "
             f"weight_decay=0.01, foreach={args.adamw == 'foreach'})` step, EMA of the weights (decay 0.999, "
             f"`torch._foreach_mul_` + `torch._foreach_add_`). **Sampler step**: under `torch.no_grad()`, "
             f"`eps = net(x, t)`, then `x = (x - beta_t/sqrt(1-abar_t) eps)/sqrt(alpha_t) + sqrt(beta_tilde_t) z` "
             f"(the spec's `ddpm` sampler; chains restart at t = T after t = 1).")
    L.append(f"- PyTorch timing: warm-up, then {mw['reps']} timed blocks (moons: {mw['train_n']} training / "
             f"{mw['sample_n']} sampler steps per block after {mw['train_warmup']}/{mw['sample_warmup']} warm-up "
             f"steps; U-Net: {uw['reps']} blocks of {uw['train_n']} / {uw['sample_n']} after "
             f"{uw['train_warmup']}/{uw['sample_warmup']}); the table shows the median block rate.")
    if args.rounds > 1:
        L.append(f"- **{args.rounds} rounds**: every workload and thread count was measured {args.rounds} times, "
                 f"PyTorch then ddpmc, round after round, and each side's blocks are pooled over the rounds "
                 f"(block counts below are per round; medians and spreads are over all of them), so noise "
                 f"lasting seconds falls on both sides rather than on one.")
    L.append(f"- **ddpmc training step**: `ddpm-train`, {work['dd_steps']} steps with a "
             f"metrics line every {work['dd_log_every']}; each step is the same work as the PyTorch loop (a random "
             f"batch of 100k moons points drawn once — the same recipe, written to an .npy that `--data` reads, "
             f"as the PyTorch loop indexes its tensor —, module train_step = t, eps, x_t, forward, loss, backward; "
             f"AdamW lr 1e-3 wd 0.01; EMA 0.999). The built-in generator (`--data moons`, fresh points every "
             f"step: a Philox draw and double-precision sin, cos and log per point, work the PyTorch loop does "
             f"not do) is measured too and listed below. Gradient clipping is turned off (`--grad-clip 0`; ddpm-train clips at 1.0 by default) "
             f"because the PyTorch loop does not clip, and checkpoints only at the end (`--ckpt-every 0`). The "
             f"table uses the median of the per-window rates in metrics.jsonl (steps between two lines ÷ the "
             f"difference of their `elapsed_s`), first window (warm-up) dropped — "
             f"the same median-of-blocks method as the PyTorch side; the end-to-end figure of the final "
             f"'trained N steps in X s' line (which also includes the first-touch warm-up and the final "
             f"checkpoint write) is listed below.")
    L.append(f"- **ddpmc sampler step**: `ddpm-sample --sampler ddpm -n {work['dd_sample_n']} --batch 256`, i.e. "
             f"{work['dd_sample_n'] // 256} chains × 1000 module sampler calls at batch 256; the tool times only "
             f"the sampling loop (model load and file writes excluded). Rate = calls / the 'in X s' time; "
             f"median of {work['dd_sample_reps']} runs.")
    L.append("")
    L.append("| measurement | blocks (steps/s): min–max (± half-range) | block | load average at start |")
    L.append("|---|---|---|---|")
    for (model, threads), r in sorted(results.items()):
        tm = r["torch"]
        name = "moons" if model == "moons" else "U-Net"
        if tm:
            L.append(f"| PyTorch {name} train, {threads} thr | {spread(tm['train'])} | {tm['train_block']} steps | "
                     f"{tm.get('load', '')} |")
            L.append(f"| PyTorch {name} sampler, {threads} thr | {spread(tm['sample'])} | {tm['sample_block']} steps "
                     f"| |")
        if "ddpmc_train" in r:
            tr, sa = r["ddpmc_train"], r["ddpmc_sample"]
            L.append(f"| ddpmc {name} train, {threads} thr | {spread(tr['windows'][1:])}; end to end "
                     f"{fmt_rate(tr['end_to_end'])} steps/s (`{tr['final_line']}`) | "
                     f"{work['dd_log_every' if model == 'moons' else 'un_log_every']} steps | "
                     f"{tr.get('load', '')} |")
            if "builtin" in tr:
                bt = tr["builtin"]
                L.append(f"| ddpmc {name} train, {threads} thr, built-in generator (`--data moons`) | "
                         f"{spread(bt['windows'][1:])}; median {fmt_rate(median(bt['windows'][1:]))}; end to end "
                         f"{fmt_rate(bt['end_to_end'])} steps/s | {work['dd_log_every']} steps | |")
            L.append(f"| ddpmc {name} sampler, {threads} thr | {spread(sa['rates'])} | {sa['calls']} calls | |")
    L.append("")
    unet = next((results[("unet", t)] for t in (1, 2) if results.get(("unet", t), {}).get("torch")), None)
    moons = next((results[("moons", t)] for t in (1, 2) if results.get(("moons", t), {}).get("torch")), None)
    if moons:
        L.append(f"- PyTorch moons MLP parameters: {moons['torch']['params']:,} (models/moons.ddpm: 41,858); "
                 f"data: {moons['torch']['data']}.")
    if unet:
        n = unet["torch"]["params"]
        L.append(f"- PyTorch fashion U-Net parameters: {n:,} "
                 f"({'matches the spec, 691,681' if n == 691681 else 'DIFFERS from the spec 691,681'}); data: "
                 f"{unet['torch']['data']}. Peak RSS of the U-Net worker processes: " +
                 ", ".join(f"{results[('unet', t)]['torch']['maxrss_mib']:.0f} MiB ({t} thr)"
                           for t in (1, 2) if results.get(('unet', t), {}).get('torch')) + ".")
        if "ddpmc_train" in unet:
            L.append(f"- ddpmc U-Net: `models/fashion_unet.ddpm` ({unet['ddpmc_train']['params']:,} parameters), "
                     f"`ddpm-train --data fashion-mnist --batch 64`, {work['un_steps']} steps with a metrics line "
                     f"every {work['un_log_every']} (first window dropped, median of the rest; window rates from "
                     f"the `elapsed_s` column); sampler: `ddpm-sample --sampler ddpm --steps "
                     f"{work['un_sample_steps']} -n 64 --batch 64` — a strided chain of {work['un_sample_steps']} "
                     f"calls of the `ddpm` sampler block, each the same work as one step of the full chain "
                     f"(one network forward + the update), median of {work['un_sample_reps']} runs.")
        else:
            L.append(f"- The U-Net's ddpmc column is n/a: {unet.get('ddpmc_na', 'not run')}.")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```")
    L.append(f"/usr/bin/python3 bench/compare_torch.py" + (" --quick" if args.quick else "")
             + (f" --isa {isa['mode']}" if isa["mode"] != "native" else ""))
    for (model, threads), r in sorted(results.items()):
        if "ddpmc_train" in r:
            L.append(r["ddpmc_train"]["command"])
            if "builtin" in r["ddpmc_train"]:
                L.append(r["ddpmc_train"]["builtin"]["command"] + "   # the built-in generator")
            L.append(r["ddpmc_sample"]["command"] + f"   # x{len(r['ddpmc_sample']['rates'])}")
    for model, label, r in variants:
        L.append(r["command"] + f"   # PyTorch {model}, {label}")
    L.append("```")
    L.append("")
    L.append("(`<config>` is the JSON workload description the script passes to its worker; TMP is a "
             "temporary directory, `--cache-dir` points the ddpmc module cache into it so the module is "
             "built by the ddpmc under test.)")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
