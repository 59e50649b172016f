"""Model FLOPs per token (6N + 12LdT, PaLM appendix B / nanoGPT's estimate_mfu) and the peak."""

from keras_llm.config import ModelConfig
from keras_llm.training import flops


def test_transformer_flops_per_token_hand_worked():
    # nanoGPT's shakespeare_char-like shape: N = 800,000, L = 4, d = 128, T = 64.
    # 6 * 800,000 = 4,800,000; 12 * 4 * 128 * 64 = 393,216.
    assert flops.transformer_flops_per_token(800_000, 4, 128, 64) == 5_193_216


def test_gpt_flops_leave_out_the_position_table():
    config = ModelConfig(architecture="gpt", num_layers=4, hidden_dim=128, sequence_length=64)
    # E.g. 808,192 parameters, of which 64 * 128 = 8,192 are positions: N = 800,000.
    assert flops.language_model_flops_per_token(config, 808_192) == 5_193_216


def test_lstm_flops_are_six_per_parameter():
    config = ModelConfig(architecture="lstm", num_layers=2, hidden_dim=256)
    assert flops.language_model_flops_per_token(config, 1_000) == 6_000


def test_matmul_flops_per_second_is_positive_and_finite():
    value = flops.matmul_flops_per_second(64, 64, 64, repeats=2)
    assert 0 < value < float("inf")


def test_the_peak_is_measured_once_per_process():
    # Each language-model run asks for the peak (about a second): the second ask is the cache's.
    first = flops.measure_matmul_peak(sizes=(64, 128), repeats=1)
    hits = flops.measure_matmul_peak.cache_info().hits
    assert flops.measure_matmul_peak(sizes=(64, 128), repeats=1) is first
    assert flops.measure_matmul_peak.cache_info().hits == hits + 1
    assert 0 < first < float("inf")


def test_gpt_matmul_shapes_are_the_steps_model_flops():
    from keras_llm.training.benchmark import gpt_matmul_shapes

    config = ModelConfig(architecture="gpt", num_layers=4, num_heads=4, hidden_dim=128,
                         sequence_length=64)
    shapes = gpt_matmul_shapes(config, vocabulary_size=65, batch_size=12)
    tokens = 12 * 64
    per_token = sum(count * 2 * batch * m * k * n for count, batch, m, k, n in shapes) / tokens
    # By hand: the weight matmuls hold 4 * (128 * 384 + 128 * 128 + 128 * 512 + 512 * 128)
    # + 128 * 65 (tied head) = 794,752 parameters, 6 FLOPs each per token (forward and both
    # backward products), plus attention's 12 * L * d * T = 393,216: 6N + 12LdT without the
    # biases and LayerNorm parameters.
    assert per_token == 6 * 794_752 + 393_216
    # 7 forward products, each with 2 backward ones; the weight gradient of QKV contracts the
    # 768 tokens.
    assert len(shapes) == 21 and (4, 1, 128, 768, 384) in shapes
