"""PPO learns: an MLP agent on EnvPool CartPole-v1 reaches a return threshold.

Uses the same actor, update and arch machinery as the Procgen runs (mode frozen: no
alphas; microbatched minibatch gradients), so a broken GAE sign, loss, gradient
accumulation or rollout bookkeeping fails here.
"""

import jax
import numpy as np

from experiments.configs import base
from rldarts.env import envs, training_env
from rldarts.learn import ppo
from rldarts.learn.actor import Actor
from rldarts.learn.ppo import collect_rollout
from rldarts.model import networks


def test_ppo_solves_cartpole_within_budget():
    c = base.get_base_config()
    c.ppo.num_envs, c.ppo.num_steps = 8, 128
    c.ppo.num_minibatches, c.ppo.update_epochs = 4, 4
    # Minibatches of 256 as 2 gradient slices: the CPU path of the Procgen defaults
    # (the whole-minibatch step is what every smoke run and the DQN tests take).
    c.ppo.microbatch_size = 128
    c.ppo.learning_rate, c.ppo.gamma, c.ppo.ent_coef = 2.5e-3, 0.99, 0.0
    c.ppo.normalize_reward = True
    c.arch.mode = "frozen"
    num_iterations = 60  # 61k env steps
    model = networks.Agent(networks.MLPTorso((64, 64)), networks.PolicyValueHead(2))

    def env_factory(segment):
        venv = envs.make_gym("CartPole-v1", c.ppo.num_envs, seed=segment)
        return [training_env.TrainingEnv(venv, c.ppo.gamma, c.ppo.normalize_reward)]

    key = jax.random.PRNGKey(0)
    actor = Actor(env_factory, ppo.make_policy(model), key)
    actor.start_segment(0)
    num_updates = num_iterations * c.ppo.num_minibatches * c.ppo.update_epochs
    state = ppo.init_state(model, c.ppo, c.arch, {}, actor.obs, key, num_updates)
    update = ppo.make_update(model, c.ppo, c.arch, c.ppo.num_envs, 0, num_updates)
    returns = []
    for _ in range(num_iterations):
        rollout, finished = collect_rollout(actor, state, c.ppo.num_steps, 1.0)
        state, metrics = update(state, rollout, 1.0)
        assert np.isfinite(float(metrics["loss"]))
        returns.append(np.concatenate(finished[0][0]))
    actor.close()
    early = np.mean(np.concatenate(returns[:5]))
    late = np.mean(np.concatenate(returns[-8:]))
    # A random policy scores ~22; 61k steps of working PPO reach the hundreds.
    assert early < 60, early
    print("cartpole early", early, "late", late)
    assert late > 150, (early, late)


def test_ppo_with_the_async_actor_solves_cartpole():
    """The Sebulba split: every rollout but the first is collected on the actor thread
    with the params from before the previous update (one update behind); PPO's ratio
    corrects with the recorded behaviour log-probabilities, and it still learns."""
    c = base.get_base_config()
    c.ppo.num_envs, c.ppo.num_steps = 8, 128
    c.ppo.num_minibatches, c.ppo.update_epochs = 4, 4
    c.ppo.learning_rate, c.ppo.gamma, c.ppo.ent_coef = 2.5e-3, 0.99, 0.0
    c.arch.mode = "frozen"
    c.parallel.async_actor = True
    c.network = "impala"  # (no batch statistics; the torso is replaced below)
    num_iterations = 60
    agent = ppo.Agent(
        c,
        networks.MLPTorso((64, 64)),
        2,
        "frozen",
        0,
        num_iterations * c.ppo.num_envs * c.ppo.num_steps,
    )

    def env_factory(segment):
        venv = envs.make_gym("CartPole-v1", c.ppo.num_envs, seed=segment)
        return [training_env.TrainingEnv(venv, c.ppo.gamma, c.ppo.normalize_reward)]

    key = jax.random.PRNGKey(0)
    actor = Actor(env_factory, agent.policy, key)
    actor.start_segment(0)
    state = agent.init_state({}, actor.obs, key)
    returns, lags = [], []
    try:
        for i in range(num_iterations):
            state, metrics, finished = agent.run_iteration(
                actor, state, 1.0, 1.0 if i + 1 < num_iterations else None
            )
            lags.append(metrics["policy_lag"])
            returns.append(np.concatenate(finished[0][0]))
    finally:
        agent.close()
        actor.close()
    assert lags == [0.0] + [1.0] * (num_iterations - 1)
    early = np.mean(np.concatenate(returns[:5]))
    late = np.mean(np.concatenate(returns[-8:]))
    print("async cartpole early", early, "late", late)
    assert early < 60, early
    assert late > 150, (early, late)
