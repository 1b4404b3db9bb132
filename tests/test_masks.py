import pytest
import torch

from prunelib.core.masks import NM, n_pruned, nm_mask, unstructured_mask
from prunelib.errors import PrunelibError


def tied_scores(rows=8, cols=64, levels=3, seed=0):
    """Scores with only a few distinct values: thresholding would over-prune these."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (rows, cols), generator=g).float()


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("scores", [torch.randn(8, 64), tied_scores()], ids=["random", "tied"])
def test_matrix_group_zeroes_exact_count_of_lowest(scores, sparsity):
    keep = unstructured_mask(scores, sparsity, "matrix")
    k = n_pruned(scores.numel(), sparsity)
    assert (~keep).sum() == k
    if 0 < k < scores.numel():  # every pruned score is <= every kept score
        assert scores[~keep].max() <= scores[keep].min()


@pytest.mark.parametrize("scores", [torch.randn(8, 64), tied_scores(levels=2)], ids=["random", "tied"])
def test_row_group_zeroes_exact_count_per_row(scores):
    keep = unstructured_mask(scores, 0.5, "row")
    assert torch.all((~keep).sum(1) == 32)
    for row in range(scores.shape[0]):
        assert scores[row][~keep[row]].max() <= scores[row][keep[row]].min()


def test_row_and_matrix_groups_differ_when_rows_have_different_scales():
    scores = torch.rand(4, 16) * torch.tensor([[1.0], [10.0], [100.0], [1000.0]])
    by_matrix = unstructured_mask(scores, 0.5, "matrix")
    assert (~by_matrix[0]).sum() == 16  # the small row is wiped out entirely
    assert torch.all((~unstructured_mask(scores, 0.5, "row")).sum(1) == 8)


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8", "3:8", "1:2"])
def test_nm_keeps_n_largest_of_every_m(pattern):
    nm = NM.parse(pattern)
    for scores in (torch.randn(6, 48), tied_scores(6, 48, levels=2)):
        keep = nm_mask(scores, nm)
        groups = keep.reshape(6, -1, nm.m)
        assert torch.all(groups.sum(-1) == nm.n)
        s = scores.reshape(6, -1, nm.m)
        kept_min = torch.where(groups, s, torch.inf).amin(-1)
        pruned_max = torch.where(~groups, s, -torch.inf).amax(-1)
        assert torch.all(pruned_max <= kept_min)


def test_nm_brute_force_on_small_case():
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2, 5.0, -1.0, 2.0, 3.0]])
    keep = nm_mask(scores, NM(2, 4))
    assert keep.tolist() == [[False, True, True, False, True, False, False, True]]


def test_nm_parse_and_sparsity():
    assert NM.parse("2:4") == NM(2, 4) and NM.parse("2:4").sparsity == 0.5
    assert str(NM(4, 8)) == "4:8"
    for bad in ["4:4", "5:4", "0:4", "a:b", "2-4"]:
        with pytest.raises(PrunelibError):
            NM.parse(bad)


def test_bad_sparsity_and_width():
    for bad in [-0.1, 1.0, 1.5]:
        with pytest.raises(PrunelibError, match="sparsity"):
            unstructured_mask(torch.randn(4, 8), bad)
    with pytest.raises(PrunelibError, match="divisible"):
        nm_mask(torch.randn(4, 10), NM(2, 4))
    with pytest.raises(PrunelibError, match="group"):
        unstructured_mask(torch.randn(4, 8), 0.5, "column")


def test_n_pruned_is_floor_without_float_error():
    assert n_pruned(10, 0.7) == 7  # 10 * 0.7 = 6.999999999999999 in floating point
    assert n_pruned(576, 0.5) == 288 and n_pruned(3, 0.5) == 1
