import torch

from prunelib.core.stats import HessianStat, InputNormStat
from prunelib.core.wanda import wanda, wanda_scores


def activations(seed=0):
    return torch.randn(6, 10, 8, generator=torch.Generator().manual_seed(seed))  # (sequences, tokens, d)


def test_hessian_is_running_mean_independent_of_batching():
    X = activations()
    flat = X.reshape(-1, 8)
    expected = 2 * flat.T @ flat / flat.shape[0]
    for split in (1, 2, 6):
        stat = HessianStat(8)
        for batch in X.split(split):
            stat.update(batch)
        torch.testing.assert_close(stat.H, expected)
        assert stat.tokens == 60


def test_input_norm_is_mean_over_sequences_of_sum_over_tokens():
    X = activations(1)
    expected = (X**2).sum(1).mean(0)
    for split in (1, 4, 6):
        stat = InputNormStat(8)
        for batch in X.split(split):
            stat.update(batch)
        torch.testing.assert_close(stat.norms, expected)


def test_wanda_score_is_weight_times_input_column_norm():
    X = activations(2)
    stat = InputNormStat(8)
    stat.update(X)
    W = torch.randn(5, 8)
    column_norm = X.reshape(-1, 8).norm(dim=0)  # ||X_j||_2 over all tokens
    expected = W.abs() * column_norm / X.shape[0] ** 0.5
    torch.testing.assert_close(wanda_scores(W, stat.norms), expected)


def test_wanda_is_per_row_by_default_and_exact():
    W = torch.randn(6, 16)
    norms = torch.rand(16) + 0.1
    result = wanda(W, norms, sparsity=0.25)
    assert torch.all((~result.mask).sum(1) == 4)
    assert torch.equal(result.weight, W * result.mask)
    scores = wanda_scores(W, norms)
    for row in range(6):
        assert scores[row][~result.mask[row]].max() <= scores[row][result.mask[row]].min()


def test_wanda_equals_magnitude_when_inputs_are_isotropic():
    from prunelib.core.magnitude import magnitude

    W = torch.randn(6, 16)
    assert torch.equal(wanda(W, torch.ones(16), sparsity=0.5).mask, magnitude(W, sparsity=0.5, group="row").mask)
