"""Sparse fine-tuning keeps every pruned weight at zero; LoRA merges without filling the zeros."""

import pytest
import torch
from tiny_models import tiny_model

from prunelib.model.architecture import prunable_linears, weight_matrix
from prunelib.model.finetune import LoRALinear, SparsityKeeper, add_lora, merge_lora, train
from prunelib.model.prune import prune_model


def pruned(family, tokens, nm="2:4"):
    model = tiny_model(family)
    prune_model(model, tokens, method="magnitude", nm=nm, quiet=True)
    return model


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_no_pruned_weight_ever_becomes_non_zero(family, tokens, weight_decay):
    model = pruned(family, tokens)
    keeper = SparsityKeeper(model)
    kept = {n: weight_matrix(m).detach().clone() for n, m in prunable_linears(model).items()}
    checks = []
    result = train(model, tokens, steps=6, lr=1e-2, batch_size=2, weight_decay=weight_decay, keeper=keeper, quiet=True,
                   on_step=lambda step, loss: checks.append(keeper.revived()))
    assert checks == [0] * 6 and len(result["losses"]) == 6
    changed = 0
    for name, module in prunable_linears(model).items():
        W = weight_matrix(module)
        assert torch.all(W[~keeper.masks[name]] == 0), name
        changed += int((W[keeper.masks[name]] != kept[name][keeper.masks[name]]).sum())
    assert changed > 0  # the kept weights did train


def test_gradients_of_pruned_weights_are_zero(tokens):
    model = pruned("llama", tokens)
    keeper = SparsityKeeper(model)
    model(input_ids=tokens, labels=tokens).loss.backward()
    for name, module in prunable_linears(model).items():
        grad = module.weight.grad
        assert torch.all(grad[~keeper.masks[name]] == 0) and grad[keeper.masks[name]].abs().sum() > 0


def test_without_the_keeper_training_revives_pruned_weights(tokens):
    model = pruned("llama", tokens)
    keeper = SparsityKeeper(model)
    keeper.remove()  # hooks off, and no apply(): the control case
    train(model, tokens, steps=3, lr=1e-2, batch_size=2, quiet=True)
    assert keeper.revived() > 0


def test_training_lowers_the_loss_on_its_data(tokens):
    model = pruned("llama", tokens)
    keeper = SparsityKeeper(model)
    with torch.no_grad():
        before = model(input_ids=tokens, labels=tokens).loss.item()
    train(model, tokens, steps=30, lr=3e-3, batch_size=6, keeper=keeper, quiet=True)
    with torch.no_grad():
        assert model(input_ids=tokens, labels=tokens).loss.item() < before


@pytest.mark.parametrize("masked", [False, True])
def test_lora_merge_keeps_the_zeros(tokens, masked):
    model = pruned("llama", tokens)
    zeros = {n: weight_matrix(m) == 0 for n, m in prunable_linears(model).items()}
    adapters = add_lora(model, rank=4, alpha=8, masked=masked)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(any(p is a.A or p is a.B for a in adapters.values()) for p in trainable)
    train(model, tokens, steps=5, lr=1e-2, batch_size=2, quiet=True)
    assert any(a.B.abs().sum() > 0 for a in adapters.values())  # the adapters learned something
    with torch.no_grad():
        trained = model(tokens).logits
    assert merge_lora(model) == len(zeros)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    for name, module in prunable_linears(model).items():
        assert torch.equal(weight_matrix(module) == 0, zeros[name]), name
    if masked:  # the update was trained through the mask, so merging loses nothing
        with torch.no_grad():
            assert torch.allclose(model(tokens).logits, trained, atol=1e-5)


def test_lora_starts_as_the_base_layer():
    torch.manual_seed(0)
    base = torch.nn.Linear(8, 6)
    x = torch.randn(3, 8)
    adapter = LoRALinear(base, rank=2)
    assert torch.equal(adapter(x), base(x)) and torch.all(adapter.delta() == 0)
