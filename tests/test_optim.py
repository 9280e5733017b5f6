"""Ranger (RAdam + Lookahead) and the warm-up + multi-step schedule."""

import copy

import pytest
import torch

from fnc.optim import Ranger, build_scheduler


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    g = torch.Generator().manual_seed(seed + 1)
    data = [(torch.randn(6, 5, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(20)]
    return model, data


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_ranger_is_radam_plus_lookahead():
    model, data = _model_and_data()
    ref = copy.deepcopy(model)
    opt = Ranger(model.parameters(), lr=1e-2, weight_decay=1e-3, k=3, alpha=0.5)
    # Lookahead by hand on torch's RAdam with the same hyper-parameters.
    radam = torch.optim.RAdam(
        ref.parameters(), lr=1e-2, betas=(0.95, 0.999), eps=1e-5, weight_decay=1e-3, decoupled_weight_decay=True
    )
    slow = [p.detach().clone() for p in ref.parameters()]
    _train(model, opt, data[:13])
    for i, batch in enumerate(data[:13], start=1):
        _train(ref, radam, [batch])
        if i % 3 == 0:
            with torch.no_grad():
                for s, p in zip(slow, ref.parameters()):
                    s.add_(0.5 * (p - s))
                    p.copy_(s)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_ranger_alpha_one_is_radam():
    model, data = _model_and_data()
    ref = copy.deepcopy(model)
    _train(model, Ranger(model.parameters(), lr=1e-2, alpha=1.0), data[:8])
    _train(ref, torch.optim.RAdam(ref.parameters(), lr=1e-2, betas=(0.95, 0.999), eps=1e-5), data[:8])
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_ranger_state_dict_round_trip_resumes_exactly():
    n, m = 4, 9  # crosses Lookahead syncs at steps 6 and 12, one of them after the resume
    model, data = _model_and_data()
    resumed = copy.deepcopy(model)
    opt = Ranger(model.parameters(), lr=1e-2, weight_decay=5e-4)
    _train(model, opt, data[: n + m])

    opt_a = Ranger(resumed.parameters(), lr=1e-2, weight_decay=5e-4)
    _train(resumed, opt_a, data[:n])
    saved_model = copy.deepcopy(resumed.state_dict())
    saved_opt = copy.deepcopy(opt_a.state_dict())
    fresh, _ = _model_and_data(seed=123)  # different init: everything must come from the checkpoint
    fresh.load_state_dict(saved_model)
    opt_b = Ranger(fresh.parameters(), lr=1e-2, weight_decay=5e-4)
    opt_b.load_state_dict(saved_opt)
    assert opt_b.param_groups[0]["lookahead_step"] == n
    assert all("slow_buffer" in opt_b.state[p] for p in fresh.parameters())
    _train(fresh, opt_b, data[n : n + m])
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ranger_closure_and_step_hooks_run_once():
    model, data = _model_and_data()
    torch.optim.RAdam([torch.nn.Parameter(torch.zeros(1))])  # makes RAdam.step a hooked wrapper too
    opt = Ranger(model.parameters(), lr=1e-2)
    calls = []
    opt.register_step_post_hook(lambda *args: calls.append(1))
    x, y = data[0]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss is not None and len(calls) == 1
    assert all("slow_buffer" in opt.state[p] for p in model.parameters())


def test_ranger_rejects_bad_lookahead():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="k"):
        Ranger(p, k=0)
    with pytest.raises(ValueError, match="alpha"):
        Ranger(p, alpha=0.0)


def _paper_lr(epoch):
    """Section 4.2 of the paper, written out: 3.5e-5 -> 3.5e-4 over 10 epochs, x0.1 at 40 and 70."""
    if epoch < 10:
        return 3.5e-5 + (3.5e-4 - 3.5e-5) * epoch / 10
    if epoch < 40:
        return 3.5e-4
    if epoch < 70:
        return 3.5e-5
    return 3.5e-6


def test_scheduler_gives_the_papers_lr_curve():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = Ranger([param], lr=3.5e-4)
    sched = build_scheduler(opt)
    lrs = []
    for _ in range(120):
        lrs.append(opt.param_groups[0]["lr"])
        param.grad = torch.zeros(1)
        opt.step()
        sched.step()
    for epoch, lr in enumerate(lrs):
        assert lr == pytest.approx(_paper_lr(epoch), rel=1e-9), epoch
    assert lrs[39] == pytest.approx(3.5e-4) and lrs[40] == pytest.approx(3.5e-5)
    assert lrs[69] == pytest.approx(3.5e-5) and lrs[70] == pytest.approx(3.5e-6)


def test_scheduler_state_dict_resumes():
    def make():
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=3.5e-4)
        return opt, build_scheduler(opt)

    opt, sched = make()
    for _ in range(45):
        opt.step()
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(30):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert opt2.param_groups[0]["lr"] == pytest.approx(3.5e-6)


def test_scheduler_without_warmup_and_bad_args():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, warmup_epochs=0, milestones=(2,), gamma=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="milestones"):
        build_scheduler(opt, milestones=(70, 40))
    with pytest.raises(ValueError, match="warmup_factor"):
        build_scheduler(opt, warmup_factor=0.0)
