import torch
from sklearn.metrics import average_precision_score

from livedead.model.metrics import AreaMatchedThreshold, BinnedPRCurve, confusion_scores


def test_pr_auc_matches_scikit_learn():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (8, 64, 64), generator=gen)
    logits = torch.randn(8, 3, 64, 64, generator=gen) + 1.5 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2)
    probs = logits.softmax(1)
    metric = BinnedPRCurve(3, thresholds=200)
    for i in range(0, 8, 2):  # several updates, as over an epoch
        metric.update(probs[i : i + 2], target[i : i + 2])
    ours = metric.compute()
    for c in range(3):
        exact = average_precision_score((target == c).flatten().numpy(), probs[:, c].flatten().numpy())
        assert abs(float(ours[c]) - exact) < 0.01, (c, float(ours[c]), exact)


def test_confusion_scores():
    cm = torch.tensor([[8, 1, 1], [2, 6, 2], [0, 0, 5]])
    s = confusion_scores(cm)
    torch.testing.assert_close(s["precision"], torch.tensor([0.8, 6 / 7, 5 / 8]))
    torch.testing.assert_close(s["recall"], torch.tensor([0.8, 0.6, 1.0]))
    torch.testing.assert_close(s["iou"], torch.tensor([8 / 12, 6 / 11, 5 / 8]))


def test_fast_argmax_and_confusion_match_torch():
    from torchmetrics.classification import MulticlassConfusionMatrix

    from livedead.model.metrics import argmax_classes

    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 3, 32, 32, generator=gen)
    scores[0, :, 0, 0] = 1.0  # a tie goes to the lower class, as with argmax
    target = torch.randint(0, 3, (4, 32, 32), generator=gen, dtype=torch.uint8)
    assert torch.equal(argmax_classes(scores), scores.argmax(1))
    cm = MulticlassConfusionMatrix(3, validate_args=False)  # as the module uses it
    cm.update(argmax_classes(scores), target)
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), scores.argmax(1).flatten().tolist(), strict=True):
        expected[t, p] += 1
    assert torch.equal(cm.compute(), expected)


def test_area_matched_threshold_finds_the_true_area():
    import doctest

    import livedead.model.metrics

    assert doctest.testmod(livedead.model.metrics).failed == 0
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(4, 64, 64, generator=gen) < 0.2).long()  # 20 % nucleus pixels
    nucleus = (0.35 + 0.5 * target + 0.2 * torch.randn(4, 64, 64, generator=gen)).clamp(0, 1)  # fat predictions
    probs = torch.stack([1 - nucleus, nucleus / 2, nucleus / 2], 1)
    metric = AreaMatchedThreshold(200)
    metric.update(probs[:2], target[:2])
    metric.update(probs[2:], target[2:])
    threshold = float(metric.compute())
    predicted = (nucleus > threshold).float().mean()
    assert abs(float(predicted) - float(target.float().mean())) < 0.01
    assert float((nucleus > 0.5).float().mean()) > 0.25  # the argmax-like cut paints nuclei fat
