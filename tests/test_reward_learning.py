"""The reward model learning inside the shared step: which frames the teacher is asked about, what it answers,
the label budget, the held-out test, and the hacking monitor."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewardax.envs as envs
from rewardax.rewards import YesTokenRewardConfig
from rewardax.rewards.teacher import Teacher
from rewardax.rl import PPOConfig
from rewardax.rl import step as rl_step
from rewardax.rl.reward_update import RewardLearning, ask_teacher, held_out_agreement
from rewardax.train.config import presets
from rewardax.train.monitor import HackingMonitor

pytestmark = pytest.mark.timeout(600)


class Brightness:
    """A pointwise stand-in for the yes-token model: its log-odds of "yes" is a frame's mean brightness / 10."""

    reference = None

    def log_probs(self, frames):
        x = frames.astype(jnp.float32).mean(axis=(1, 2, 3)) / 10
        return jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)

    def __call__(self, frames, state=None):
        yes, no = self.log_probs(frames)
        return yes - no, {}


def frames_of(values):
    return jnp.broadcast_to(jnp.asarray(values, jnp.uint8)[:, None, None, None], (len(values), 2, 2, 3))


def test_the_teacher_answers_chosen_pairs_and_the_model_is_scored_on_every_pair():
    dense = jnp.array([0.1, 0.9, 0.5, 0.5, 0.2, 0.7, 0.3, 0.8])
    brightness = jnp.array([10, 90, 50, 50, 20, 70, 30, 80])  # orders frames as the dense ground truth does
    success = (dense > 0.85).astype(jnp.float32)
    valid = jnp.ones(8, bool)
    learning = RewardLearning(labels_per_iteration=3, capacity=4)
    (frames, label, answers, weight), (correct, counted) = ask_teacher(
        Brightness(), frames_of(brightness), success, dense, valid, jax.random.key(0), 3, learning)
    assert frames.shape == (3, 2, 2, 2, 3) and label.shape == weight.shape == (3,) and answers.shape == (3, 2)
    # Each example's label says whether its first frame is the better one; frames carry their brightness.
    first, second = frames[:, 0, 0, 0, 0].astype(float), frames[:, 1, 0, 0, 0].astype(float)
    np.testing.assert_array_equal(label, np.where(first > second, 1.0, np.where(first < second, 0.0, 0.5)))
    np.testing.assert_array_equal(answers, np.stack([first == 90, second == 90], 1).astype(float))
    np.testing.assert_array_equal(weight, 1.0)
    assert float(correct) == float(counted)  # it orders every pair whose dense values differ as the teacher does
    # A broken simulation's frames are never labelled.
    broken = valid.at[:].set(False)
    _, _, _, weight = ask_teacher(Brightness(), frames_of(brightness), success, dense, broken, jax.random.key(0), 3,
                                  learning)[0]
    np.testing.assert_array_equal(weight, 0.0)


def test_entropy_selection_asks_about_the_pairs_the_model_is_least_sure_of():
    # Pairs are drawn at random; of 8 frames only two are nearly alike, and the entropy rule picks their pair
    # whenever the draw makes it.
    brightness = jnp.array([0, 250, 100, 101, 30, 200, 60, 160])
    dense = brightness / 255.0
    learning = RewardLearning(labels_per_iteration=1, capacity=4, selection="entropy")
    drawn = 0
    for seed in range(40):
        key = jax.random.key(seed)
        order = jax.random.permutation(jax.random.split(key, 5)[0], 8)
        pairs = set(zip(np.asarray(order[:4]).tolist(), np.asarray(order[4:]).tolist()))
        if not ({(2, 3), (3, 2)} & pairs):
            continue
        frames = ask_teacher(Brightness(), frames_of(brightness), dense, dense, jnp.ones(8, bool), key, 1,
                             learning)[0][0]
        assert sorted(np.asarray(frames[0, :, 0, 0, 0]).tolist()) == [100, 101]
        drawn += 1
    assert drawn > 0


def test_held_out_agreement_is_pinned_to_hand_counts():
    frames = frames_of([10, 20, 30, 40])
    dense = jnp.array([0.0, 0.5, 0.5, 1.0])  # five of the six pairs differ
    success = jnp.array([0.0, 0.0, 0.0, 1.0])
    same = held_out_agreement(Brightness(), frames, success, dense)
    assert float(same["reward_model/held_out_accuracy"]) == 1.0 and float(same["reward_model/held_out_auc"]) == 1.0
    reversed_ = held_out_agreement(Brightness(), frames_of([40, 30, 20, 10]), success, dense)
    assert float(reversed_["reward_model/held_out_accuracy"]) == 0.0
    flat = held_out_agreement(Brightness(), frames_of([10, 10, 10, 10]), success, dense)
    assert float(flat["reward_model/held_out_accuracy"]) == 0.5 and float(flat["reward_model/held_out_auc"]) == 0.5


@pytest.fixture(scope="module")
def cartpole_learning():
    """A tiny random yes-token model learning in the step on CartPole, 8 envs on the 4 test devices."""
    env = envs.make("cartpole")
    learning = RewardLearning(updates=2, batch=2, labels_per_iteration=4, capacity=8, held_out=16, label_budget=10)
    reward = learning.make_trainable(YesTokenRewardConfig(checkpoint="random", bfloat16=False).build(env))
    config = PPOConfig(num_steps=8, minibatches=2, epochs=1, hidden_sizes=(16,))
    mesh = rl_step.make_mesh()
    state, batch, labels = rl_step.init(env, jax.random.key(0), config, 8, 4, mesh, reward, learning, 16)
    start = jax.device_get(state.reward_params)
    train_step = rl_step.make_train_step(env, config, 8, 4, 16, mesh, learning=learning)
    history = []
    for _ in range(4):
        state, batch, labels, metrics = train_step(state, batch, labels, reward.split()[0])
        history.append(jax.device_get(metrics))
    return start, state, labels, history


def test_the_reward_model_learns_within_the_label_budget_from_a_sharded_ring(cartpole_learning):
    start, state, labels, history = cartpole_learning
    # 4 queries per iteration until the next 4 would pass the budget of 10.
    assert [m["reward_model/labels"] for m in history] == [4, 8, 8, 8]
    assert labels.frames.shape == (8, 2, 16, 16, 3) and labels.labelled.shape == (4,)  # 2 slots on each device
    assert {shard.data.shape[0] for shard in labels.frames.addressable_shards} == {2}  # split over the devices
    np.testing.assert_array_equal(labels.count, 2)
    assert all(np.isfinite(m["reward_model/loss"]) and 0 <= m["reward_model/held_out_accuracy"] <= 1
               for m in history)
    changed = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(), start,
                           jax.device_get(state.reward_params))
    assert max(jax.tree.leaves(changed)) > 0  # the weights moved


def test_learning_settings_are_checked_with_the_fix():
    env = envs.make("cartpole")
    mesh = rl_step.make_mesh()
    config = PPOConfig(num_steps=8, minibatches=2, epochs=1, hidden_sizes=(16,))
    with pytest.raises(ValueError, match="each device's 2 envs offer 1 pairs"):
        rl_step.make_train_step(env, config, 8, 1, 16, mesh, learning=RewardLearning(labels_per_iteration=8,
                                                                                     capacity=8))
    with pytest.raises(ValueError, match="labels_per_iteration=6 must be a multiple of the 4 devices"):
        rl_step.init(env, jax.random.key(0), config, 8, 1, mesh, None, RewardLearning(labels_per_iteration=6))
    with pytest.raises(ValueError, match="selection must be one of uniform, entropy"):
        RewardLearning(selection="largest")
    with pytest.raises(ValueError, match="must not exceed capacity"):
        RewardLearning(labels_per_iteration=64, capacity=32)
    with pytest.raises(ValueError, match="mistake must be a probability"):
        RewardLearning(teacher=Teacher(mistake=0.7))
    with pytest.raises(ValueError, match="train_reward trains the yes-token reward model"):
        dataclasses.replace(presets("cartpole")["smoke"], train_reward=True)


@pytest.mark.parametrize("task", ["kneeling", "cartpole"])
def test_every_preset_asks_no_more_queries_than_its_envs_offer(task):
    for name, preset in presets(task).items():
        config = dataclasses.replace(preset, reward=YesTokenRewardConfig(checkpoint="random"), train_reward=True)
        queries, _ = config.reward_learning.per_device(jax.device_count())
        assert queries <= config.num_envs // jax.device_count() // 2, name


def test_the_hacking_monitor_warns_when_the_variance_collapses_or_the_proxy_leaves_the_oracle():
    monitor = HackingMonitor(window=4)
    warnings = []
    for variance in [1.0] * 4 + [0.01] * 8:  # the reward's variance collapses while nothing succeeds
        out, said = monitor({"reward_variance": variance, "reward": 0.5, "oracle/dense": 0.3, "oracle/success": 0.0})
        warnings += said
    assert out["hacking/variance_ratio"] == pytest.approx(0.01) and out["hacking/gap"] == 0.0
    assert len(warnings) == 1 and "variance" in warnings[0]  # once, not every iteration
    # Mastering the task makes every reward alike too: no warning then.
    monitor = HackingMonitor(window=4)
    said = [monitor({"reward_variance": v, "reward": 0.9, "oracle/dense": 1.0, "oracle/success": 1.0})[1]
            for v in [1.0] * 4 + [0.01] * 8]
    assert not any(said)
    # The reward rises while the dense ground truth falls.
    monitor = HackingMonitor(window=4)
    for t in range(8):
        out, said = monitor({"reward_variance": 1.0, "reward": 0.1 * t, "oracle/dense": 1.0 - 0.1 * t,
                             "oracle/success": 0.0})
        if said:
            assert "rose while" in said[0] and out["hacking/gap"] > HackingMonitor.GAP
            break
    else:
        raise AssertionError("no warning for a reward rising against the ground truth")
    assert HackingMonitor(enabled=False)({"reward_variance": 1.0, "reward": 0.0}) == ({}, [])


def test_a_run_starts_from_the_labels_of_a_dataset_on_disk(tmp_path):
    from rewardax.eval.dataset import generate
    from rewardax.train import train

    generate(envs.make("cartpole"), "cartpole", tmp_path / "data", episodes=2, every=100, path_frames=8,
             frame_size=32)  # 12 frames: 6 pairs
    smoke = presets("cartpole")["smoke"]
    config = dataclasses.replace(
        smoke, reward=YesTokenRewardConfig(checkpoint="random", bfloat16=False), train_reward=True, iterations=1,
        run_dir=str(tmp_path / "run"), reward_learning=dataclasses.replace(
            smoke.reward_learning, labels_from=str(tmp_path / "data")))
    summary = train(config, progress=False)
    assert summary["metrics"]["reward_model/labels"] == 6 + jax.device_count()  # the dataset's, then one per device
    with pytest.raises(ValueError, match="frames are 32×32 but the run's frame_size is 16"):
        train(dataclasses.replace(config, frame_size=16, run_dir=str(tmp_path / "other")), progress=False)
    assert not (tmp_path / "other").exists()  # refused before anything was written
