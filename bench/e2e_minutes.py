#!/usr/bin/python3
"""ddpm-train --minutes M against PyTorch's training loop for M minutes: the same U-Net
(models/fashion_unet.ddpm, 691,681 parameters), batch 64 of real Fashion-MNIST, T threads.

    /usr/bin/python3 bench/e2e_minutes.py                   # 20 minutes each side, 2 threads (~41 minutes)
    /usr/bin/python3 bench/e2e_minutes.py --minutes 0.5     # smoke run (~2 minutes)

It counts the training steps each side completes in the same wall-clock budget:

  * ddpmc: build/tools/ddpm-train models/fashion_unet.ddpm --data fashion-mnist --batch 64
    --threads T --minutes M --out TMP/run --steps 1000000000 (the issue's command; --steps only
    lifts the default cap of 5000 steps, which a fast run could reach before the time is up).
    ddpm-train starts its clock after the module is built or loaded and the data are read,
    and checks it after each step.
  * PyTorch: the Algorithm-1 step of bench/compare_torch.py (its worker, in a new
    `minutes` mode): fresh batch of 64 images, t, eps, x_t, forward, MSE, backward, AdamW
    (lr 1e-3, wd 0.01, foreach), EMA 0.999, one step after the other until the budget ends;
    the clock starts after the model and data are ready and is checked after each step, as
    in ddpm-train. Configuration: by default the one compare_torch.py found fastest for the
    U-Net at 2 threads, OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx512
    with torch.set_num_threads(T); --torch-env "K=V ..." replaces the variables.

Both run with compare_torch.py's clean environment (the VM's OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE and inherited thread variables removed), one after the other
(--order). Output: a markdown report on stdout and in bench/results/e2e_minutes.md.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_torch as ct  # noqa: E402  (the PyTorch model, training step and environment)

REPO = ct.REPO
SPEC = REPO / "models" / "fashion_unet.ddpm"
STEPS_CAP = 1_000_000_000  # ddpm-train's --steps: far beyond any budget
TARGET = 1.5               # the ratio
Fail = ct.Fail


def log(s):
    print(s, file=sys.stderr, flush=True)


def parse_env(text):
    pairs = {}
    for item in shlex.split(text):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise Fail(f"--torch-env: expected K=V items, got {item!r}")
        pairs[k] = v
    return pairs


def run_torch(args, env, changes):
    cfg = dict(model="unet", threads=args.threads, set_threads=True, foreach=True,
               channels_last=args.torch_channels_last, minutes=args.minutes, progress_s=60.0)
    argv = [sys.executable, str(ct.SCRIPT), "--worker", json.dumps(cfg, separators=(",", ":"))]
    load_before = ct.loadavg()
    log(f"e2e_minutes: PyTorch for {args.minutes:g} min, {args.threads} thread(s), "
        f"{' '.join(changes)}; load average {load_before}")
    t = time.time()
    p = subprocess.Popen([str(a) for a in argv], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = p.communicate(timeout=60 * args.minutes + 900)
    except BaseException:
        p.kill()
        p.wait()
        raise
    wall = time.time() - t
    load_after = ct.loadavg()
    if p.returncode != 0:
        raise Fail(f"the PyTorch worker failed (exit code {p.returncode}); its messages are above")
    res = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
    if res is None:
        raise Fail(f"the PyTorch worker printed no result:\n{out[-2000:]}")
    res.update(load_before=load_before, load_after=load_after, wall=wall,
               command=ct.cmd_str(changes, argv[:3]) + " '<config>'", config_json=argv[3])
    log(f"e2e_minutes: PyTorch: {res['steps']} steps in {res['seconds']:.1f} s "
        f"({res['steps'] / res['seconds']:.2f} steps/s), loss (last 50) {res['loss_last50']:.4f}; "
        f"load average {load_after}")
    return res


def last_metrics(path):
    """The first and last records of a metrics.jsonl (None while it is empty)."""
    first = last = None
    try:
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line being written
                    continue
                first = first or rec
                last = rec
    except OSError:
        pass
    return first, last


def run_ddpmc(args, tool, run_dir):
    env, changes = ct.ddpmc_env()
    argv = [tool, str(SPEC), "--data", "fashion-mnist", "--batch", "64", "--threads", str(args.threads),
            "--minutes", f"{args.minutes:g}", "--out", str(run_dir), "--steps", str(STEPS_CAP)]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    argv += shlex.split(args.ddpmc_args)
    load_before = ct.loadavg()
    log(f"e2e_minutes: ddpm-train for {args.minutes:g} min, {args.threads} thread(s); load average {load_before}")
    log_path = run_dir.parent / "ddpm-train.log"
    metrics_path = run_dir / "metrics.jsonl"
    t = time.time()
    with open(log_path, "w") as lf:
        p = subprocess.Popen([str(a) for a in argv], env=env, cwd=REPO, stdout=lf, stderr=subprocess.STDOUT)
        try:
            deadline = t + 60 * args.minutes + 900
            next_report, last = t + 60, (0, 0.0)
            while p.poll() is None:
                if time.time() > deadline:
                    raise Fail(f"ddpm-train took longer than {60 * args.minutes + 900:.0f} s; "
                               f"is the machine overloaded?")
                time.sleep(1)
                if time.time() >= next_report:
                    next_report += 60
                    _, rec = last_metrics(metrics_path)
                    if rec:
                        step, el = int(rec["step"]), float(rec["elapsed_s"])
                        if el > last[1]:
                            log(f"ddpmc: {el / 60:.1f} min: {step} steps, {step / max(el, 1e-9):.2f} steps/s "
                                f"(last interval {(step - last[0]) / (el - last[1]):.2f}), loss {rec['loss']:.4f}")
                            last = (step, el)
        except BaseException:
            p.terminate()  # ddpm-train checkpoints and stops on SIGTERM
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            raise
    wall = time.time() - t
    load_after = ct.loadavg()
    text = log_path.read_text(errors="replace")
    if p.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise Fail(f"ddpm-train failed (exit code {p.returncode}):\n{tail}")
    m = re.search(r"(trained|stopped by the time limit after) (\d+) steps in ([\d.]+) s \(([\d.]+) steps/s\), "
                  r"loss (\S+); checkpoint at step (\d+)", text)
    if not m:
        raise Fail(f"cannot find the final 'trained N steps in X s' line in ddpm-train's output:\n{text[-1500:]}")
    steps, seconds = int(m.group(2)), float(m.group(3))
    first, last = last_metrics(metrics_path)
    if last is None or int(last["step"]) != steps:
        raise Fail(f"metrics.jsonl ends at step {last and last['step']}, but ddpm-train says {steps} steps")
    pm = re.search(r": (\d+) parameters, batch", text)
    params = int(pm.group(1)) if pm else None
    if params != 691681:
        raise Fail(f"{SPEC.relative_to(REPO)} has {params} parameters, not 691,681 (the PyTorch U-Net's)")
    cm = re.search(r"compiled \S+ in ([\d.]+) s", text)
    hm = re.search(r"using cached module for \S+ \((.*)\)", text)
    module = f"compiled in {cm.group(1)} s (outside the budget)" if cm else \
        (f"taken from the module cache ({hm.group(1)})" if hm else "?")
    res = dict(steps=steps, seconds=seconds, final_line=m.group(0), stopped_by_time=m.group(1) != "trained",
               loss_last=float(last["loss"]), loss_first=float(first["loss"]), loss_final_line=m.group(5),
               metrics_last=last, params=params, module=module, wall=wall, load_before=load_before,
               load_after=load_after, command=ct.cmd_str(changes, [str(a) for a in argv]))
    log(f"e2e_minutes: ddpmc: {m.group(0)}; load average {load_after}")
    if not res["stopped_by_time"]:
        log("e2e_minutes: warning: ddpm-train stopped before the time limit (it reached --steps)")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of each side (fractions allowed)")
    ap.add_argument("--threads", type=int, default=2, help="threads of each side (default 2)")
    ap.add_argument("--order", choices=["ddpmc-first", "torch-first"], default="ddpmc-first")
    ap.add_argument("--torch-env", default=None, metavar='"K=V ..."',
                    help="PyTorch's thread/capability variables instead of the default "
                         "'OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx512' "
                         "(torch.set_num_threads(T) is always called)")
    ap.add_argument("--torch-channels-last", action="store_true", help="PyTorch model and inputs in channels_last")
    ap.add_argument("--build-dir", default=str(REPO / "build"), help="ddpmc build directory (default: build)")
    ap.add_argument("--cache-dir", default=None,
                    help="ddpm-train's module cache (default: its own, $DDPM_CACHE_DIR or ~/.cache/ddpmc)")
    ap.add_argument("--ddpmc-args", default="", metavar='"FLAGS"',
                    help="extra ddpm-train flags, e.g. '--grad-clip 0 --weight-decay 0.01' for PyTorch's arithmetic")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "e2e_minutes.md"),
                    help="where to write the markdown report")
    ap.add_argument("--wait-load", type=float, default=0.0, metavar="L",
                    help="before each run, wait until the 1-minute load average is at most L (0 = do not wait)")
    ap.add_argument("--wait-minutes", type=float, default=10.0, help="give up waiting after this long")
    args = ap.parse_args()
    if not args.minutes > 0:
        ap.error("--minutes must be positive")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    try:
        return orchestrate(args)
    except Fail as e:
        print(f"e2e_minutes.py: error: {e}", file=sys.stderr)
        return 1


def orchestrate(args):
    build = Path(args.build_dir).resolve()
    src = build / "tools" / "ddpm-train"
    if not os.access(src, os.X_OK):
        raise Fail(f"{src} is missing; build first: cmake --build build (or pass --build-dir DIR)")
    if not SPEC.exists():
        raise Fail(f"{SPEC} is missing")
    T = args.threads
    if args.torch_env is None:
        # ATen trusts ATEN_CPU_CAPABILITY=avx512 and dies of SIGILL on a CPU without AVX-512 (as
        # compare_torch.py, which checks the same flags): there PyTorch keeps its own choice.
        cap = "avx512" if not ct.missing_flags(ct.cpu_flags(), "avx512") else None
        t_env, t_changes = ct.torch_env(T, 1, {"ATEN_CPU_CAPABILITY": cap} if cap else None)
        torch_label = (f"OMP_NUM_THREADS={T} OPENBLAS_NUM_THREADS=1"
                       + (" ATEN_CPU_CAPABILITY=avx512" if cap else " (no AVX-512 on this CPU: ATen's own choice)")
                       + " (default)")
    else:
        t_env, t_changes = ct.torch_env(None, None, parse_env(args.torch_env))
        torch_label = args.torch_env + " (--torch-env)"
    torch_label += f", torch.set_num_threads({T})" + (", channels_last" if args.torch_channels_last else "")

    wait = lambda: ct.wait_for_load(args.wait_load, args.wait_minutes,  # noqa: E731
                                    lambda s: log(s.replace("compare_torch:", "e2e_minutes:")))
    wait()
    t_start = time.time()
    load_start = ct.loadavg()
    scrubbed = {k: os.environ[k] for k in ct.SCRUB_VARS if k in os.environ}
    log(f"e2e_minutes: {ct.cpu_model()}, {os.cpu_count()} CPUs; load average {load_start}; "
        f"{args.minutes:g} min per side, {T} thread(s), {args.order}; about {2 * args.minutes + 1:.0f} min in all")

    tmp = Path(tempfile.mkdtemp(prefix="e2e_minutes."))
    ct.TMP_DIR = str(tmp)
    results = {}
    try:
        # A snapshot of the tool, so that a concurrent rebuild cannot swap it mid-run.
        (tmp / "bin").mkdir()
        tool = tmp / "bin" / "ddpm-train"
        shutil.copy2(src, tool)
        ct.TOOLS_SHOWN = (str(tmp / "bin"), str(build / "tools"))
        tool_info = f"ddpm-train built {time.strftime('%Y-%m-%d %H:%M', time.localtime(src.stat().st_mtime))}"
        sides = ["ddpmc", "torch"] if args.order == "ddpmc-first" else ["torch", "ddpmc"]
        for i, side in enumerate(sides):
            if i > 0:
                wait()  # the first run's own load average decays in 1-2 minutes
            if side == "torch":
                results["torch"] = run_torch(args, t_env, t_changes)
            else:
                results["ddpmc"] = run_ddpmc(args, tool, tmp / "run")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = make_report(args, results, torch_label, scrubbed, load_start, time.time() - t_start, tool_info, build)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"e2e_minutes: wrote {out}")
    return 0


def make_report(args, results, torch_label, scrubbed, load_start, elapsed, tool_info, build):
    tr, dd = results["torch"], results["ddpmc"]
    T, M = args.threads, args.minutes
    ratio = dd["steps"] / tr["steps"] if tr["steps"] else float("nan")
    git = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cs %s"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    smoke = M < 20
    L = [f"# ddpm-train --minutes {M:g} against PyTorch's training loop (fashion U-Net, batch 64, {T} thread"
         f"{'s' if T > 1 else ''})" + (" — SMOKE run, not the 20-minute figures" if smoke else ""), ""]
    first, second = (dd, tr) if args.order == "ddpmc-first" else (tr, dd)
    name2 = "PyTorch" if second is tr else "ddpmc"
    # Without --wait-load the second run starts at the first run's own load average (about T).
    checked = [("start", first["load_before"])] + ([(f"{name2} start", second["load_before"])] if args.wait_load else [])
    busy = [f"{k} {v}" for k, v in checked if float(v.split()[0]) > 0.5]
    if busy:
        L += [f"> **Warning:** 1-minute load average above 0.5 ({'; '.join(busy)}) on {os.cpu_count()} CPUs: "
              f"other processes took CPU time from this run, PyTorch's OpenMP threads most. Re-run with "
              f"`--wait-load 0.5` on a quiet machine.", ""]
    L.append(f"- Machine: {ct.cpu_model()}, {os.cpu_count()} logical CPUs; load average {load_start} at the start; "
             f"run took {elapsed / 60:.1f} min on {time.strftime('%Y-%m-%d %H:%M %Z')}.")
    ob = tr["info"]["openblas"]
    L.append(f"- PyTorch {tr['torch_version']} ({sys.executable}), configuration {torch_label}; "
             f"{tr['info']['torch_threads']} intra-op threads, OpenBLAS {ob.get('core', ob.get('error', '?'))} with "
             f"{ob.get('threads', '?')} thread(s); data: {tr['data']}; {tr['params']:,} parameters"
             f"{'' if tr['params'] == 691681 else ' (DIFFERS from the spec, 691,681)'}.")
    L.append(f"- ddpmc: {build}/tools ({tool_info}; run from a snapshot copy); repository HEAD {git}"
             f"{' (the working tree has uncommitted changes)' if dirty else ''}; U-Net module {dd['module']}.")
    L.append("- Environment of both: "
             + (", ".join(f"`{k}={v}`" for k, v in scrubbed.items()) + " removed" if scrubbed else
                "nothing machine-specific to remove")
             + "; inherited thread variables dropped. Order: " + args.order + ".")
    if not args.wait_load:
        L.append(f"- The {name2} run started right after the other one (no `--wait-load`): its 'load avg before' "
                 f"is mostly the first run's own, decaying.")
    L.append("")
    L.append(f"| side | steps in {M:g} min | loop time | steps/s | final loss | first loss | load avg before | "
             f"load avg after |")
    L.append("|---|---:|---:|---:|---:|---:|---|---|")
    L.append(f"| PyTorch | {tr['steps']:,} | {tr['seconds']:.1f} s | {tr['steps'] / tr['seconds']:.2f} | "
             f"{tr['loss_last50']:.4f} (mean of last 50) | {tr['loss_first50']:.4f} (mean of first 50) | "
             f"{tr['load_before']} | {tr['load_after']} |")
    L.append(f"| ddpmc | {dd['steps']:,} | {dd['seconds']:.1f} s | {dd['steps'] / dd['seconds']:.2f} | "
             f"{dd['loss_last']:.4f} (last metrics line) | {dd['loss_first']:.4f} (first metrics line) | "
             f"{dd['load_before']} | {dd['load_after']} |")
    L.append("")
    L.append(f"**Ratio ddpmc / PyTorch steps: {ratio:.2f}×** (the issue asks for at least {TARGET}× at 20 minutes, "
             f"2 threads: {'met' if ratio >= TARGET else 'not met'}"
             + (f" in this {M:g}-minute smoke run, which does not decide it" if smoke or T != 2 else "") + ").")
    if tr.get("nonfinite_losses"):
        L.append(f"PyTorch saw {tr['nonfinite_losses']} non-finite losses.")
    L.append("")
    L.append("## How it was measured")
    L.append("")
    L.append(f"- **Budget.** ddpm-train starts its clock (runtime/train.cpp) after the module is built or taken "
             f"from the cache, loaded, and the data are read, and checks it after every step: the step that "
             f"crosses {M:g} min is the last and counts. Module build time is therefore **outside** the budget. "
             f"The PyTorch loop does the same: its clock starts after the model is built and the data are "
             f"loaded, and the budget is checked after each completed step. Neither side gets warm-up steps "
             f"outside the budget.")
    L.append(f"- **ddpmc** runs the issue's command (`--minutes {M:g}`), plus `--out TMP/run` and "
             f"`--steps {STEPS_CAP}` (the default `--steps 5000` would stop a run faster than "
             f"{5000 / (60 * M):.3g} steps/s before the time is up)"
             + (f" and `{args.ddpmc_args}`" if args.ddpmc_args else "")
             + ". With ddpm-train's defaults it clips gradients at norm 1.0, uses weight decay 0, writes a "
               "metrics line every 100 steps and a checkpoint every 1000 (inside the budget), and a final "
               f"checkpoint after the budget (inside its 'in X s', not in the step count). Its wall time was "
               f"{dd['wall']:.1f} s in all, {dd['wall'] - dd['seconds']:.1f} s of it before the clock started or "
               f"after it stopped. Final line: `{dd['final_line']}`.")
    L.append(f"- **PyTorch** runs compare_torch.py's U-Net training step (Algorithm 1: a fresh random batch of 64 "
             f"images, `t ~ U{{1..1000}}`, `eps = randn`, `x_t`, forward, `F.mse_loss`, "
             f"`zero_grad(set_to_none=True)`, backward, `AdamW(lr=1e-3, weight_decay=0.01, foreach=True)`, EMA "
             f"0.999 with `_foreach_mul_/_foreach_add_`), no gradient clipping, in a child process "
             f"(compare_torch.py's worker in its `minutes` mode); progress once a minute. Wall time of the "
             f"process {tr['wall']:.1f} s; peak RSS {tr['maxrss_mib']:.0f} MiB.")
    L.append("- Final losses are a sanity check that both trained, not a comparison: PyTorch's is the mean of "
             "its last 50 steps, ddpmc's the mean over its last metrics window (up to 100 steps)"
             + ("; in a run this short the first and last windows overlap." if min(tr["steps"], dd["steps"]) < 200
                else "."))
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```")
    cmd = "/usr/bin/python3 bench/e2e_minutes.py"
    for flag, val, default in (("--minutes", f"{M:g}", "20"), ("--threads", str(T), "2"),
                               ("--order", args.order, "ddpmc-first")):
        if val != default:
            cmd += f" {flag} {val}"
    if args.wait_load:
        cmd += f" --wait-load {args.wait_load:g}"
    if args.torch_env is not None:
        cmd += f" --torch-env {shlex.quote(args.torch_env)}"
    if args.torch_channels_last:
        cmd += " --torch-channels-last"
    if args.ddpmc_args:
        cmd += f" --ddpmc-args {shlex.quote(args.ddpmc_args)}"
    L.append(cmd)
    L.append(dd["command"])
    L.append(tr["command"])
    L.append("```")
    L.append("")
    L.append(f"(TMP is a temporary directory; `<config>` is `{tr['config_json']}`.)")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
