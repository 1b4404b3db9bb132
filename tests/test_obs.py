"""Optimal Brain Surgeon against brute-force least squares."""

import torch

from prunelib.core.obs import obs_eliminate, obs_remove, obs_saliency


def problem(d=6, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(d, n, generator=g, dtype=torch.float64)
    X[1] += 0.8 * X[0]  # correlated inputs make the update matter
    w = torch.randn(d, generator=g, dtype=torch.float64)
    return w, X


def brute_force(w, X, removed):
    """Best w' with w'[removed] = 0 minimizing ||w X - w' X||^2, by least squares."""
    keep = [j for j in range(len(w)) if j not in removed]
    target = w @ X
    solution = torch.linalg.lstsq(X[keep].T, target.unsqueeze(1)).solution.squeeze(1)
    new = torch.zeros_like(w)
    new[keep] = solution
    return new, ((target - new @ X) ** 2).sum()


def test_one_weight_removal_matches_least_squares():
    w, X = problem()
    H = 2 * X @ X.T  # Hessian of ||w X - w' X||^2
    H_inv = torch.linalg.inv(H)
    saliency = obs_saliency(w, H_inv)
    for q in range(len(w)):
        new, loss = obs_remove(w, H_inv, q)
        best, best_loss = brute_force(w, X, {q})
        torch.testing.assert_close(new, best)
        torch.testing.assert_close(loss, best_loss)
        torch.testing.assert_close(saliency[q], best_loss)
        # the same error in the Gram form of the issue: w_q^2 / [(X X^T)^-1]_qq
        torch.testing.assert_close(w[q] ** 2 / torch.linalg.inv(X @ X.T)[q, q], best_loss)


def test_obs_picks_the_brute_force_best_weight():
    w, X = problem(seed=3)
    losses = [brute_force(w, X, {q})[1] for q in range(len(w))]
    assert int(torch.argmin(obs_saliency(w, torch.linalg.inv(2 * X @ X.T)))) == int(torch.argmin(torch.stack(losses)))


def test_sequential_removal_with_elimination_matches_least_squares():
    """Removing weights one after another, with the inverse Hessian updated by elimination,
    reaches the least-squares optimum for the union of removed weights."""
    w, X = problem(d=7, seed=5)
    H_inv = torch.linalg.inv(2 * X @ X.T)
    current = w.clone()
    for q in (4, 0, 2):
        current, _ = obs_remove(current, H_inv, q)
        H_inv = obs_eliminate(H_inv, q)
    best, _ = brute_force(w, X, {4, 0, 2})
    torch.testing.assert_close(current, best)
