"""CityPersons' official evaluation transcribed loop for loop (cvgroup-njust/CityPersons,
evaluation/eval_script/eval_MR_multisetup.py: COCOeval._prepare, evaluateImg, iou, accumulate,
summarize, for category 1), on plain rows instead of COCO objects, for property tests of
repssd.eval.citypersons. tests/eval/test_citypersons_eval.py checks it against the original's
fixture. Rows are the official xywh: GT ``(x, y, w, h, ignore, vis_ratio)`` (height = h),
detections ``(x, y, w, h, score)``, one list per image, category 1 only.
"""
import numpy as np

FPPI_THRS = np.array([0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000])
EXP_FILTER = 1.25


def iou(d, g, crowd):
    """COCOeval.iou for one pair."""
    unionw = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    if unionw <= 0:
        return 0.0
    unionh = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if unionh <= 0:
        return 0.0
    t = unionw * unionh
    unionarea = d[2] * d[3] if crowd else d[2] * d[3] + g[2] * g[3] - t
    return float(t) / unionarea


def evaluate_image(gt, dt, h_rng, v_rng, max_det, threshold):
    """evaluateImg: (dt scores, dt matched, dt ignored, gt ignored), or None."""
    if len(gt) == 0 and len(dt) == 0:
        return None
    ignore = [1 if (g[3] < h_rng[0] or g[3] > h_rng[1]) or (g[5] < v_rng[0] or g[5] > v_rng[1]) else g[4]
              for g in gt]  # _prepare
    gtind = np.argsort(ignore, kind="mergesort")
    gt, gt_ig = [gt[i] for i in gtind], [ignore[i] for i in gtind]
    dtind = np.argsort([-d[4] for d in dt], kind="mergesort")
    dt = [dt[i] for i in dtind[0:max_det]]
    dt = [d for d in dt if d[3] >= h_rng[0] / EXP_FILTER and d[3] < h_rng[1] * EXP_FILTER]
    gtm, dtm, dt_ig = [0] * len(gt), [0] * len(dt), [0] * len(dt)
    for dind, d in enumerate(dt):
        best_oa, bstg, bstm = min([threshold, 1 - 1e-10]), -2, -2
        for gind, g in enumerate(gt):
            if gtm[gind] > 0:
                continue
            if bstm != -2 and gt_ig[gind] == 1:
                break
            overlap = iou(d, g, gt_ig[gind])
            if overlap < best_oa:
                continue
            best_oa, bstg, bstm = overlap, gind, (1 if gt_ig[gind] == 0 else -1)
        if bstg == -2:
            continue
        dt_ig[dind] = gt_ig[bstg]
        dtm[dind] = 1  # the matched GT's id (ids count from 1)
        if bstm == 1:
            gtm[bstg] = 1
    return [d[4] for d in dt], dtm, dt_ig, gt_ig


def miss_rate(gts, dts, h_rng, v_rng, threshold=0.5, max_det=1000):
    """accumulate + summarize: (MR, the 9 recalls); (-1, [-1] * 9) without non-ignored GT."""
    E = [evaluate_image(g, d, h_rng, v_rng, max_det, threshold) for g, d in zip(gts, dts)]
    E = [e for e in E if e is not None]
    q = [-1.0] * len(FPPI_THRS)
    if len(E) == 0 or sum(ig == 0 for e in E for ig in e[3]) == 0:
        return -1, q
    npig = sum(ig == 0 for e in E for ig in e[3])
    scores = np.concatenate([e[0] for e in E] + [[]])
    inds = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate([e[1] for e in E] + [[]])[inds]
    dt_ig = np.concatenate([e[2] for e in E] + [[]])[inds]
    tps = np.logical_and(dtm, np.logical_not(dt_ig))[dt_ig == 0]
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))[dt_ig == 0]
    tp, fp = np.cumsum(tps).astype(float), np.cumsum(fps).astype(float)
    fppi, recall = fp / len(gts), (tp / npig).tolist()  # its recall envelope loop is a no-op: recall never falls
    q = [0.0] * len(FPPI_THRS)
    try:
        for ri, pi in enumerate(np.searchsorted(fppi, FPPI_THRS, side="right") - 1):
            q[ri] = recall[pi]  # pi = -1: the final recall
    except IndexError:
        pass
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(1 - np.array(q))))), q
