"""PyTorch reference for issue 3's CPU target: the compute bound of CleanRL's
`ppo_procgen.py` on this machine, measured the way `benchmarks/ppo_throughput.py`
measures ours.

CleanRL's agent is IMPALA-CNN (16/32/32, 256 hidden), acting on 64 envs and updating
with 3 epochs x 8 minibatches of 2048. One PPO iteration (64 x 256 = 16,384 env steps)
costs 256 acting forwards at batch 64 plus 24 Adam steps (forward + backward) at
batch 2048; their timings give the steps/s no implementation of that script can exceed
here (environment time excluded). Written from the architecture, not copied.

Not a project dependency: run it in a scratch venv holding PyTorch's CPU wheel:

    python3.11 -m venv /tmp/venv_torch
    /tmp/venv_torch/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/venv_torch/bin/python benchmarks/archive/torch_reference.py [--layers 256]
"""

import argparse
import json
import time

import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class Impala(nn.Module):
    def __init__(self, depths=(16, 32, 32), hidden=256, actions=15):
        super().__init__()
        layers, cin = [], 3
        for d in depths:
            layers += [
                nn.Conv2d(cin, d, 3, padding=1),
                nn.MaxPool2d(3, 2, padding=1),
                Residual(d),
                Residual(d),
            ]
            cin = d
        self.torso = nn.Sequential(*layers)
        self.dense = nn.Linear(8 * 8 * depths[-1], hidden)
        self.policy = nn.Linear(hidden, actions)
        self.value = nn.Linear(hidden, 1)

    def forward(self, obs):  # obs: uint8 NHWC, as Procgen gives it
        x = obs.permute(0, 3, 1, 2).float() / 255.0
        x = F.relu(self.dense(F.relu(self.torso(x).flatten(1))))
        return self.policy(x), self.value(x).squeeze(-1)


def ppo_loss(model, obs, actions, old_logp, adv, returns, clip=0.2):
    logits, value = model(obs)
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(1, actions[:, None]).squeeze(1)
    ratio = torch.exp(logp - old_logp)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    return pg + 0.5 * ((value - returns) ** 2).mean() - 0.01 * entropy


def time_it(fn, repeats):
    fn()  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


# Same shapes as benchmarks/archive/conv_layers.py (kept in sync by hand: this file must run
# without rldarts or JAX installed).
CONV_LAYERS = ((64, 3, 16, 1), (32, 16, 16, 4), (32, 16, 32, 1), (16, 32, 32, 5), (8, 32, 32, 4))
POOL_LAYERS = ((64, 16), (32, 32), (16, 32))


def layer_table(batch, repeats):
    """Milliseconds per layer, as benchmarks/archive/conv_layers.py prints them for XLA."""
    ms = lambda fn: round(1000 * time_it(fn, repeats), 1)
    out, total = {}, 0.0
    for hw, cin, cout, count in CONV_LAYERS:
        x = torch.randn(batch, cin, hw, hw)
        w = torch.randn(cout, cin, 3, 3)
        g = torch.randn(batch, cout, hw, hw)
        row = {
            "fwd": ms(lambda: F.conv2d(x, w, padding=1)),
            "dx": ms(lambda: torch.nn.grad.conv2d_input(x.shape, w, g, padding=1)),
            "dw": ms(lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1)),
            "count": count,
        }
        total += count * (row["fwd"] + row["dw"] + (row["dx"] if cin != 3 else 0.0))
        out[f"conv {hw}x{hw} {cin}->{cout}"] = row
    for hw, c in POOL_LAYERS:
        x = torch.randn(batch, c, hw, hw, requires_grad=True)

        def fwd_bwd():
            F.max_pool2d(x, 3, 2, padding=1).sum().backward()

        row = {"fwd": ms(lambda: F.max_pool2d(x.detach(), 3, 2, padding=1)), "fwd_bwd": ms(fwd_bwd)}
        total += row["fwd_bwd"]
        out[f"pool {hw}x{hw} {c}"] = row
    return {
        "torch": torch.__version__,
        "batch": batch,
        "layers_ms": out,
        "training_pass_ms": round(total, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--num-steps", type=int, default=256)
    ap.add_argument("--num-minibatches", type=int, default=8)
    ap.add_argument("--update-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--act-repeats", type=int, default=20)
    ap.add_argument("--step-repeats", type=int, default=3)
    ap.add_argument(
        "--layers",
        type=int,
        default=0,
        metavar="BATCH",
        help="instead: per-layer table at this batch (as conv_layers.py)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.layers:
        print(json.dumps(layer_table(args.layers, repeats=5), indent=1))
        return
    model = Impala()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, eps=1e-5)
    minibatch = args.num_envs * args.num_steps // args.num_minibatches

    obs_act = torch.randint(0, 256, (args.num_envs, 64, 64, 3), dtype=torch.uint8)

    @torch.no_grad()
    def act():
        logits, value = model(obs_act)
        torch.distributions.Categorical(logits=logits).sample()

    obs = torch.randint(0, 256, (minibatch, 64, 64, 3), dtype=torch.uint8)
    actions = torch.randint(0, 15, (minibatch,))
    old_logp, adv, returns = (torch.randn(minibatch) for _ in range(3))

    def step():
        opt.zero_grad()
        ppo_loss(model, obs, actions, old_logp - 3.0, adv, returns).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()

    act_s = time_it(act, args.act_repeats)
    step_s = time_it(step, args.step_repeats)
    steps_per_iter = args.num_envs * args.num_steps
    iter_s = args.num_steps * act_s + args.update_epochs * args.num_minibatches * step_s
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "act_batch": args.num_envs,
                "act_s": round(act_s, 4),
                "act_samples_per_s": round(args.num_envs / act_s, 1),
                "minibatch": minibatch,
                "step_s": round(step_s, 3),
                "step_samples_per_s": round(minibatch / step_s, 1),
                "compute_bound_sps": round(steps_per_iter / iter_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
