"""DQN learns: C51 + double Q + dueling + n-step + prioritized replay on EnvPool
CartPole-v1 reaches a return threshold, through the same Actor and learner the Procgen
runs use (arch mode frozen: an MLP has no alphas)."""

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import envs, training_env
from rldarts.learn import dqn, dqn_losses
from rldarts.learn.actor import Actor
from rldarts.model import networks


def test_dqn_learns_cartpole_within_budget():
    c = base.get_base_config()
    d = c.dqn
    d.num_envs, d.n_step, d.batch_size = 8, 3, 64
    d.learning_rate, d.adam_eps = 1e-3, 1e-8
    d.min_replay_size, d.target_update_period = 1000, 200
    d.samples_per_insert = 4.0
    d.replay_capacity = 40_000
    d.gamma = 0.99
    d.num_atoms, d.v_min, d.v_max = 51, 0.0, 1.0
    c.arch.mode = "frozen"
    model = networks.Agent(networks.MLPTorso((64, 64)), networks.C51DuelingHead(2, d.num_atoms, 64))

    def env_factory(segment):
        return [
            training_env.TrainingEnv(
                envs.make_gym("CartPole-v1", d.num_envs, seed=segment),
                d.gamma,
                normalize_reward=False,
            )
        ]

    key = jax.random.PRNGKey(0)
    eps = dqn_losses.apex_epsilons(d.num_envs, 0.4, 7.0)
    actor = Actor(env_factory, dqn.make_policy(model, d, eps), key)
    actor.start_segment(0)
    state = dqn.init_state(model, d, c.arch, {}, actor.obs, key)
    replays = dqn.make_replays(d, [d.num_envs], (4,), np.float32)
    learner = dqn.Learner(model, d, c.arch, replays, reward_scale=500.0)
    learner.start_segment(0, 0)
    returns = []
    for _ in range(12):  # 12 x 4096 = 49k env steps
        state, metrics, finished = learner.run_iteration(actor, state, 1.0, 4096)
        returns.append(np.concatenate(finished[0][0]))
    actor.close()
    assert metrics["learner_steps"] > 1000 and np.isfinite(metrics["loss"])
    # Greedy evaluation of the learned Q-function.
    greedy = jax.jit(dqn.make_policy(model, d, np.zeros(8)))
    res = envs.evaluate(
        lambda o, k: greedy(state.params, {}, o, k, 1.0)[0],
        lambda: envs.make_gym("CartPole-v1", 8, seed=123),
        16,
        0,
    )
    print(
        "dqn cartpole: first",
        returns[0].mean(),
        "last",
        returns[-1].mean(),
        "greedy",
        res["mean_return"],
    )
    assert returns[0].mean() < 60
    assert res["mean_return"] > 150, res["mean_return"]
