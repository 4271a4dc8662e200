"""The one config every binary shares; presets override fields of it.

Every hyperparameter is named once, here. Keys scripts and sweeps can rely on:
env_name, distribution_mode, num_levels, start_level, seed, total_env_steps, agent,
network, genotype, arch.mode, ppo.num_envs, ppo.num_steps, ppo.num_minibatches,
ppo.update_epochs, ppo.learning_rate, ppo.gamma.
"""

from ml_collections import config_dict


def get_base_config() -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    # Procgen (reference section 9): easy mode, 200 training levels, test on all levels.
    c.env_name = "starpilot"
    c.distribution_mode = "easy"
    c.num_levels = 200
    c.start_level = 0
    c.seed = 0
    c.total_env_steps = 25_000_000
    c.agent = "ppo"
    c.num_threads = 0  # EnvPool worker threads; 0 = one per core

    # Network: 'impala', 'darts_standard', 'darts_impala' (supernets unless a genotype).
    c.network = "darts_standard"
    c.genotype = ""  # path of a genotype.json: trains that discrete cell
    c.net = config_dict.ConfigDict()
    c.net.depths = (16, 32, 32)
    c.net.dense = 256
    c.net.search_space = "rl_darts_conv"
    c.net.num_nodes = 4
    c.net.output_mode = "concat_conv"
    c.net.first_conv = True
    # What the backward pass recomputes instead of storing (rldarts.model.remat: none |
    # cell | edge); auto: the first level whose learner step fits the device
    # (rldarts.run.memory, checked at start-up).
    c.net.remat = "auto"

    # Architecture updates (rldarts.learn.arch).
    c.arch = config_dict.ConfigDict()
    c.arch.mode = "joint"  # joint | alternating | unrolled (2nd-order DARTS) | frozen
    # How the supernet mixes its ops (rldarts.learn.arch): darts (every op on every edge) |
    # gdas (one op per edge drawn per forward pass) | pc_darts (ops on 1/K channels).
    c.arch.method = "darts"
    c.arch.gumbel_tau = 10.0  # gdas: Gumbel-softmax temperature, linearly annealed to
    c.arch.final_gumbel_tau = 0.1  # this one over the run (GDAS's 10 -> 0.1)
    c.arch.partial_channels_k = 4  # pc_darts: the ops see 1/K of each edge's channels
    # unrolled: the virtual weight step's xi (0 = the weights' lr). At the Adam lr used
    # as a plain SGD step the hypergradient is first order in all but name; DARTS's
    # 0.025 (an SGD lr) makes the second-order term dominate and turn the gradient
    # around. 3e-3 adds a clear second-order term in the SGD step's linear regime
    # (benchmarks/unrolled_step.py, benchmarks/results/README.md, issue 18).
    c.arch.unrolled_lr = 3e-3
    c.arch.optimizer = "adam"  # adam (DARTS settings below) | same_as_weights (official)
    c.arch.learning_rate = 3e-4
    c.arch.b1 = 0.5
    c.arch.b2 = 0.999
    c.arch.weight_decay = 1e-3
    c.arch.inverse_temperature = 1.0
    c.arch.final_inverse_temperature = 1.0  # != inverse_temperature: linear anneal
    c.arch.heldout_source = "unseen_levels"  # alternating: unseen_levels | rollout_split
    c.arch.heldout_fraction = 0.25  # share of the envs that feed the alpha step
    c.arch.discretize_k = 2  # kept incoming edges per node

    # PPO (reference section 7, Procgen settings of CleanRL / Cobbe et al.).
    c.ppo = config_dict.ConfigDict()
    c.ppo.num_envs = 64
    c.ppo.num_steps = 256
    c.ppo.num_minibatches = 8
    c.ppo.update_epochs = 3
    c.ppo.learning_rate = 5e-4
    c.ppo.anneal_lr = False
    c.ppo.adam_eps = 1e-5
    c.ppo.gamma = 0.999
    c.ppo.gae_lambda = 0.95
    c.ppo.clip_eps = 0.2
    c.ppo.clip_value_loss = True
    c.ppo.ent_coef = 0.01
    c.ppo.vf_coef = 0.5
    c.ppo.max_grad_norm = 0.5
    c.ppo.norm_adv = True
    c.ppo.normalize_reward = True
    c.ppo.reward_clip = 10.0
    # Samples per jitted forward+backward inside a minibatch. Compute only for networks
    # without batch norm (gradients summed over microbatches: the same update); 0 = auto:
    # 256 on CPU (faster per sample there), the whole minibatch on accelerators. DARTS
    # networks normalise over their batch: auto takes whole minibatches, and a value
    # > 0 is a hyperparameter (batch norm over that many samples), fingerprinted.
    c.ppo.microbatch_size = 0
    # Compute only: where the epoch x minibatch loops run. 'scan': one jitted lax.scan
    # (fastest on accelerators); 'host': a Python loop around jitted steps (XLA:CPU
    # runs convolutions inside a scan body much slower); 'auto': host on CPU, else scan.
    c.ppo.update_loop = "auto"
    # Compute only: how a rollout is collected. 'host': a Python loop of jitted policy
    # calls and env steps; 'scan': acting and env steps in one jitted lax.scan, no host
    # round trip per step (JAX-native envs only: minatar/*); 'auto': scan wherever it
    # can run (faster on CPU too: a rollout has no backward pass). Same rollout either
    # way (tests/test_rollout_scan.py).
    c.ppo.rollout_loop = "auto"

    # Rainbow-style DQN (reference section 8): C51 on [0, 1], dueling, double Q, n-step,
    # prioritized replay; rewards divided by the game's max return and clipped to [-1, 1].
    c.dqn = config_dict.ConfigDict()
    c.dqn.num_envs = 64
    c.dqn.iteration_env_steps = 25_600  # env steps between two metrics rows
    c.dqn.replay_capacity = 500_000
    c.dqn.min_replay_size = 10_000
    c.dqn.batch_size = 256
    c.dqn.samples_per_insert = 8.0  # sampled transitions per inserted transition
    c.dqn.n_step = 7
    c.dqn.gamma = 0.99
    c.dqn.learning_rate = 5e-5
    c.dqn.adam_eps = 1.5e-4
    c.dqn.max_grad_norm = 10.0
    c.dqn.priority_exponent = 0.8
    c.dqn.importance_exponent = 0.2
    c.dqn.target_update_period = 500
    c.dqn.num_atoms = 51
    c.dqn.v_min = 0.0
    c.dqn.v_max = 1.0
    c.dqn.hidden = 512
    c.dqn.epsilon_base = 0.4  # Ape-X: env i acts with base ** (1 + alpha * i / (N - 1))
    c.dqn.epsilon_alpha = 7.0
    c.dqn.eval_epsilon = 0.0  # 0: greedy evaluation
    c.dqn.reward_max_return = 0.0  # 0: the game's easy-mode Rmax (procgen_scores.csv)

    # SAC from pixels (rldarts.learn.sac) for DM-Control, DrQ's settings (Kostrikov et al.
    # 2020, "Image Augmentation Is All You Need", Table 1 / their DMC code): one env,
    # replay 100k, 1000 seed steps, batch 512, one update per env step, Adam lr 1e-3
    # (DrQ uses 2e-4 on cheetah_run), init temperature 0.1 (Adam betas 0.5, 0.999),
    # target entropy -action_dim, critic EMA tau 0.01 and actor update every 2nd step,
    # target every 2nd step, hidden 1024, 1-step returns, gamma 0.99, image pad 4.
    # PI-SAC (Lee et al. 2020), the paper's learner, differs mainly in its contrastive
    # loss (off here, as in the official RL-DARTS code).
    c.sac = config_dict.ConfigDict()
    c.sac.num_envs = 1
    c.sac.iteration_env_steps = 1000  # env (agent) steps between two metrics rows
    c.sac.replay_capacity = 100_000
    c.sac.min_replay_size = 1000  # learning starts here
    c.sac.random_steps = 1000  # uniform random actions until then (DrQ's seed steps)
    c.sac.batch_size = 512
    c.sac.samples_per_insert = 512.0  # = batch_size * updates per env step / num_envs
    c.sac.n_step = 1
    c.sac.gamma = 0.99
    c.sac.learning_rate = 1e-3  # critic and encoder
    c.sac.actor_learning_rate = 1e-3
    c.sac.temperature_learning_rate = 1e-3
    c.sac.init_temperature = 0.1
    c.sac.tau = 0.01
    c.sac.target_update_period = 2
    c.sac.actor_update_period = 2
    c.sac.hidden = 1024
    c.sac.image_pad = 4

    # Evaluation with the stochastic policy, on test levels (num_levels=0) and on the
    # training levels.
    c.eval = config_dict.ConfigDict()
    c.eval.every_iterations = 50
    # Also evaluate the untrained agent before the first iteration (a row at env step 0):
    # curves start at 0, and the claims report's R_untrained (rldarts.report.report_claims)
    # is read there for families without published constants (MinAtar, DM-Control).
    c.eval.at_start = False
    c.eval.num_episodes = 64
    c.eval.num_envs = 64
    c.eval.train_levels = True

    # Devices (rldarts.learn.parallel). The learner shards every batch over a mesh of
    # learner_devices (0 = all local devices): the same update as on one device. The
    # acting forward pass shards the env batch over the same devices.
    c.parallel = config_dict.ConfigDict()
    c.parallel.learner_devices = 1
    # Sebulba split (rldarts.learn.async_actor): an actor thread acts one update behind on
    # actor_devices (local device ids) while the learner trains on the other devices
    # (all of them if none is left).
    c.parallel.async_actor = False
    c.parallel.actor_devices = (0,)
    # Multi-host: jax.distributed.initialize when set ('host:port', or 'auto' for the
    # platform's own detection: TPU pods, SLURM); every process runs the same command
    # with its own process_id and steps num_envs / num_processes envs.
    c.parallel.coordinator_address = ""
    c.parallel.num_processes = 1
    c.parallel.process_id = 0

    # Bookkeeping. Checkpoints cut the run into env segments (rldarts.learn.actor).
    c.log = config_dict.ConfigDict()
    c.log.checkpoint_every_iterations = 50
    c.log.genotype_every_iterations = 10
    c.log.tensorboard = True
    return c


def use_official_ppo(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """The official RL-DARTS PPO variant: 64 envs x 1024 steps, minibatch 2048, 2 epochs."""
    c.ppo.num_steps = 1024
    c.ppo.num_minibatches = c.ppo.num_envs * c.ppo.num_steps // 2048
    c.ppo.update_epochs = 2
    return c


def smoke(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """Tiny everything: a whole run incl. compile in well under a minute on 2 cores."""
    c.net.depths = (4, 8)
    c.net.dense = 32
    c.net.num_nodes = 2
    c.net.search_space = "conv3x3_only"
    c.ppo.num_envs = 8
    c.ppo.num_steps = 32
    c.ppo.num_minibatches = 2
    c.ppo.update_epochs = 1
    c.total_env_steps = 3 * 8 * 32
    c.dqn.num_envs = 8
    c.dqn.iteration_env_steps = 256
    c.dqn.replay_capacity = 4096
    c.dqn.min_replay_size = 256
    c.dqn.batch_size = 32
    c.dqn.samples_per_insert = 1.0
    c.dqn.n_step = 3
    c.dqn.target_update_period = 10
    c.dqn.hidden = 32
    c.eval.every_iterations = 2
    c.eval.num_episodes = 4
    c.eval.num_envs = 4
    c.log.checkpoint_every_iterations = 2
    c.log.genotype_every_iterations = 1
    return c


def cpu_demo(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """The `make search` job: ~5 minutes on 2 CPU cores, alphas visibly moving.

    On a CPU the learner's convolution backward pass dominates (benchmarks/results/), so
    the network, the op set and the budget are cut hard: both cell types at
    widths 8/16, 2 nodes, the default RL-DARTS op set, 25k env steps, one PPO epoch of
    8 minibatches. The alpha learning rate is ~170x DARTS's 3e-4 so that 96 alpha steps
    move the mixture visibly: a demo of the machinery, not a search result.
    """
    c.net.depths = (8, 16)
    c.net.dense = 64
    c.net.num_nodes = 2
    c.net.first_conv = False
    c.net.search_space = "rl_darts_default"
    c.ppo.num_envs = 32
    c.ppo.num_steps = 64
    c.ppo.num_minibatches = 8
    c.ppo.update_epochs = 1
    c.total_env_steps = 12 * 32 * 64
    c.arch.learning_rate = 5e-2
    c.dqn.num_envs = 32
    c.dqn.iteration_env_steps = 2048
    c.dqn.replay_capacity = 50_000
    c.dqn.min_replay_size = 2048
    c.dqn.batch_size = 64
    c.dqn.samples_per_insert = 1.0
    c.dqn.learning_rate = 2.5e-4
    c.dqn.target_update_period = 100
    c.dqn.hidden = 64
    c.eval.every_iterations = 6
    c.eval.num_episodes = 8
    c.eval.num_envs = 8
    c.log.checkpoint_every_iterations = 6
    c.log.genotype_every_iterations = 3
    return c


def minatar(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """MinAtar Breakout (gymnax, JAX-native; rldarts.env.minatar) in a CPU budget: the
    paper's claims checked on a laptop. Any game: --config.env_name=minatar/<game>.

    Networks (``NETWORKS_OF_PRESET``): search ``darts_minatar`` (one 16-wide stage of two
    normal cells on the 10x10 grid), train ``minatar_cnn`` without a genotype (Young &
    Tian 2019's conv 16 3x3 + dense 128: the hand-designed baseline at equal width).
    """
    c.env_name = "minatar/breakout"
    c.total_env_steps = 2_000_000
    c.net.depths = (16,)
    c.net.dense = 128  # Young & Tian 2019's hidden layer
    c.net.num_nodes = 3
    c.net.search_space = "rl_darts_default"
    c.net.first_conv = False  # unused by the MinAtar networks
    # No levels: held-out envs differ by seed only (unseen_levels is refused).
    c.arch.heldout_source = "rollout_split"
    c.eval.at_start = True  # R_untrained of the claims report (no published constants)
    # PPO as Pgx's MinAtar PPO example (itself PureJaxRL's PPO): gamma 0.99, GAE 0.95,
    # clip 0.2, entropy 0.01, 128-step rollouts, 3 epochs; fewer envs (64 vs 4096) and
    # a larger lr (1e-3 vs 3e-4, annealed) for a budget of ~2M steps on a CPU.
    c.ppo.num_envs = 64
    c.ppo.num_steps = 128
    c.ppo.num_minibatches = 4
    c.ppo.update_epochs = 3
    c.ppo.learning_rate = 1e-3
    c.ppo.anneal_lr = True
    c.ppo.gamma = 0.99
    # DQN after Obando-Ceron & Castro 2021 ("Revisiting Rainbow", MinAtar): C51 on
    # [0, 100] with raw rewards (MinAtar rewards are 0 / 1 per step), 3-step returns,
    # Adam lr 1e-4 eps 3.125e-4, batch 32, one update per 4 env steps (8 samples per
    # insert), replay 100k; their target period of 1000 env steps = 250 updates.
    c.dqn.num_envs = 64
    c.dqn.iteration_env_steps = 8192
    c.dqn.replay_capacity = 100_000
    c.dqn.min_replay_size = 5_000
    c.dqn.batch_size = 32
    c.dqn.samples_per_insert = 8.0
    c.dqn.n_step = 3
    c.dqn.gamma = 0.99
    c.dqn.learning_rate = 1e-4
    c.dqn.adam_eps = 3.125e-4
    c.dqn.target_update_period = 250
    c.dqn.v_min = 0.0
    c.dqn.v_max = 100.0
    c.dqn.reward_max_return = 1.0  # rewards as they are (no Procgen R_max)
    c.dqn.hidden = 128
    c.eval.every_iterations = 25
    c.eval.num_episodes = 32
    c.eval.num_envs = 32
    c.log.checkpoint_every_iterations = 50
    c.log.genotype_every_iterations = 10
    return c


def minatar_smoke(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """``smoke`` on MinAtar Breakout: a whole search or retrain in seconds (tests)."""
    c = smoke(minatar(c))
    c.net.depths = (4,)
    c.net.dense = 16
    c.dqn.min_replay_size = 256
    c.dqn.v_max = 10.0
    # As smoke: a constant lr, so a run extended on resume follows the same schedule.
    c.ppo.anneal_lr = False
    return c


def dmc(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """SAC from pixels on DM-Control cartpole_swingup (any task:
    --config.env_name=dmc/<domain>_<task>), DrQ's hyperparameters (the ``sac`` section).

    Networks (``NETWORKS_OF_PRESET``): search ``darts_dmc`` (the RL-DARTS encoder: a
    stride-2 conv of 32, one IMPALA stage of two normal cells at 32 channels, dense 50 +
    LayerNorm), train ``drq`` without a genotype (DrQ's 4 convs of 32, dense 50 +
    LayerNorm). 500k agent steps; for accelerators (a supernet SAC update at batch 512
    takes seconds on a CPU, benchmarks/results/README.md).
    """
    c.env_name = "dmc/cartpole_swingup"
    c.agent = "sac"
    c.total_env_steps = 500_000
    c.net.depths = (32,)
    c.net.dense = 50  # DrQ's feature dim
    c.net.num_nodes = 4
    c.net.search_space = "rl_darts_conv"
    c.net.first_conv = False  # unused by the DM-Control networks
    c.arch.heldout_source = "rollout_split"  # no levels
    c.eval.at_start = True  # R_untrained of the claims report (no published constants)
    c.eval.every_iterations = 10
    c.eval.num_episodes = 10
    c.eval.num_envs = 10
    c.log.checkpoint_every_iterations = 50
    c.log.genotype_every_iterations = 10
    return c


def dmc_smoke(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """``dmc`` cut to a whole search or retrain in a few CPU minutes (tests, sweeps)."""
    c = dmc(c)
    c.net.depths = (4,)
    c.net.dense = 16
    c.net.num_nodes = 2
    c.net.search_space = "conv3x3_only"
    c.total_env_steps = 3 * 32
    c.sac.num_envs = 2
    c.sac.iteration_env_steps = 32
    c.sac.replay_capacity = 2048
    c.sac.min_replay_size = 32
    c.sac.random_steps = 32
    c.sac.batch_size = 16
    c.sac.samples_per_insert = 8.0  # = batch 16 x 1 update per vector step / 2 envs
    c.sac.hidden = 32
    c.eval.every_iterations = 3  # the last iteration only: a 125-step episode per env
    c.eval.num_episodes = 2
    c.eval.num_envs = 2
    c.eval.train_levels = False  # the same distribution again: no levels
    c.log.checkpoint_every_iterations = 2
    c.log.genotype_every_iterations = 1
    return c


def paper(c: config_dict.ConfigDict) -> config_dict.ConfigDict:
    """DartsStandardCNN 16/32/32, 4 nodes, rl_darts_conv, 25M steps (for accelerators)."""
    return c


PRESETS = {
    "smoke": smoke,
    "cpu_demo": cpu_demo,
    "paper": paper,
    "paper_official": lambda c: use_official_ppo(paper(c)),
    "minatar": minatar,
    "minatar_smoke": minatar_smoke,
    "dmc": dmc,
    "dmc_smoke": dmc_smoke,
}
# The networks of a preset's search (a supernet) and of its train config without a
# genotype (the baseline); presets not listed: darts_standard and impala (Procgen).
NETWORKS_OF_PRESET = {
    "minatar": ("darts_minatar", "minatar_cnn"),
    "minatar_smoke": ("darts_minatar", "minatar_cnn"),
    "dmc": ("darts_dmc", "drq"),
    "dmc_smoke": ("darts_dmc", "drq"),
}


def networks_of(preset: str) -> tuple[str, str]:
    """(search network, train network without a genotype) of ``preset``."""
    return NETWORKS_OF_PRESET.get(preset, ("darts_standard", "impala"))


def build(preset: str, **overrides) -> config_dict.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    c = PRESETS[preset](get_base_config())
    for key, value in overrides.items():
        c[key] = value
    return c


def preset_dicts() -> dict:
    """Preset name -> its full config as a dict (the report names each run's preset)."""
    return {name: make(get_base_config()).to_dict() for name, make in PRESETS.items()}
