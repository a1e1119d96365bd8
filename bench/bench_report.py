"""Turn the JSON lines of bench/bench_engines.sh into the Markdown report:
conditions, the inference table (median ms with quartiles, ratios, peak RSS),
the training rows and the cross-engine output check.

  /usr/bin/python3 bench/bench_report.py RESULTS_DIR

Ratios are legodnn's time over the other engine's (a training step's time
too): above 1 means legodnn is slower.
"""

import glob
import json
import os
import sys

import numpy as np

ENGINES = ('legodnn', 'ort', 'pytorch')
NAMES = {'legodnn': 'legodnn', 'ort': 'ORT', 'pytorch': 'PyTorch'}


def fmt_ms(r):
    if r is None:
        return 'n/a'
    d = 3 if r['median_ms'] < 1 else 2 if r['median_ms'] < 10 else 1
    return '%.*f (%.*f–%.*f)' % (d, r['median_ms'], d, r['p25_ms'], d, r['p75_ms'])


def ratio(a, b):
    return '%.2f' % (a / b) if a and b else 'n/a'


def mib(r):
    """Peak resident MiB, then (when known) the resident MiB at the end of the
    run: a peak far above it is a load-time transient."""
    if not r:
        return 'n/a'
    s = '%.0f' % (r['rss_peak_kb'] / 1024)
    return s + (' (%.0f)' % (r['rss_end_kb'] / 1024) if r.get('rss_end_kb', -1) >= 0 else '')


def over_rounds(rs):
    """One configuration's rounds (bench_engines.sh --rounds) as one row: the
    median of the rounds' medians and quartiles, the largest peak."""
    if len(rs) == 1:
        return rs[0]
    r = dict(rs[0])
    for k in ('median_ms', 'p25_ms', 'p75_ms'):
        r[k] = float(np.median([x[k] for x in rs]))
    r['rss_peak_kb'] = max(x['rss_peak_kb'] for x in rs)
    r['rss_end_kb'] = max(x.get('rss_end_kb', -1) for x in rs)
    r['rounds'] = len(rs)
    return r


def main():
    d = sys.argv[1]
    rows, meta = [], {}
    with open(os.path.join(d, 'results.jsonl')) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r.get('meta'):
                    meta = r
                else:
                    rows.append(r)
    inf = {}
    for r in rows:
        if r.get('mode') != 'train':
            inf.setdefault((r['model'], r['batch'], r['threads'], r['engine']), []).append(r)
    inf = {k: over_rounds(v) for k, v in inf.items()}
    trn = {(r['threads'], r['engine']): r for r in rows if r.get('mode') == 'train'}
    ver = {r['engine']: r.get('version') for r in rows}
    blas = next((r['blas'] for r in rows if r.get('blas')), None)
    loads = [r[k] for r in rows for k in ('load_before', 'load_after')]
    base = {e: np.median([r['rss_base_kb'] for r in rows if r['engine'] == e]) / 1024 for e in ENGINES
            if any(r['engine'] == e for r in rows)}

    out = []
    out.append('Machine: %s, %s cores, %.0f GiB RAM. Run %s to %s; load average (1 min) %.1f to %.1f '
               'while it ran.' % (meta.get('cpu'), meta.get('cores'), meta.get('mem_kb', 0) / 2**20,
                                  meta.get('start'), meta.get('end'), min(loads, default=0),
                                  max(loads, default=0)))
    rounds = meta.get('rounds', 1)
    in_rounds = ('' if rounds == 1 else
                 '; inference in %d rounds of 1/%d of that each, the engines taking turns round by '
                 'round, and each cell the median over the rounds' % (rounds, rounds))
    out.append('Command: `%s`; after 2 warm-up runs, as many timed runs as fill %s ms (at least %s, at '
               'most 200; training: 1 warm-up step, at least 3)%s. Cells: median (25th–75th percentile).'
               % (meta.get('command', '').strip(), meta.get('budget_ms'), meta.get('min_reps'), in_rounds))
    out.append('Engines: legodnn; ONNX Runtime %s (npm onnxruntime-node, CPU provider, graph optimisation '
               "'all', interOp 1, %s); PyTorch %s (eval, inference_mode, BLAS %s, OPENBLAS_CORETYPE=%s%s)."
               % (ver.get('ort'), 'spinning off' if meta.get('passive') else 'default spinning',
                  ver.get('pytorch'), blas, meta.get('openblas_coretype'),
                  ', OMP_WAIT_POLICY=PASSIVE' if meta.get('passive') else ''))
    out.append('Resident memory of each process before loading a model: %s.'
               % ', '.join('%s %.0f MiB' % (NAMES[e], v) for e, v in base.items()))
    out.append('')
    out.append('| model | batch | threads | legodnn ms | ORT ms | PyTorch ms | ours/ORT | ours/PyTorch '
               '| peak (end) RSS MiB legodnn / ORT / PyTorch |')
    out.append('|---|---|---|---|---|---|---|---|---|')
    keys = sorted({k[:3] for k in inf}, key=lambda k: (list(dict.fromkeys(r['model'] for r in rows)).index(k[0]),
                                                        k[1], k[2]))
    for m, b, t in keys:
        r = {e: inf.get((m, b, t, e)) for e in ENGINES}
        med = {e: r[e]['median_ms'] if r[e] else None for e in ENGINES}
        out.append('| %s | %d | %d | %s | %s | %s | %s | %s | %s / %s / %s |' % (
            m, b, t, fmt_ms(r['legodnn']), fmt_ms(r['ort']), fmt_ms(r['pytorch']),
            ratio(med['legodnn'], med['ort']), ratio(med['legodnn'], med['pytorch']),
            mib(r['legodnn']), mib(r['ort']), mib(r['pytorch'])))
    if trn:
        out.append('')
        out.append('Training, cifar_resnet18, batch 32, one step = forward (train mode) + cross-entropy + '
                   'backward + SGD (momentum 0.9, weight decay 5e-4) on a fixed batch:')
        out.append('')
        out.append('| threads | legodnn img/s | PyTorch img/s | ours/PyTorch (step time) | legodnn step ms '
                   '| PyTorch step ms | peak (end) RSS MiB legodnn / PyTorch |')
        out.append('|---|---|---|---|---|---|---|')
        for t in sorted({k[0] for k in trn}):
            a, p = trn.get((t, 'legodnn')), trn.get((t, 'pytorch'))
            out.append('| %d | %s | %s | %s | %s | %s | %s / %s |' % (
                t, '%.1f' % a['img_per_s'] if a else 'n/a', '%.1f' % p['img_per_s'] if p else 'n/a',
                ratio(a and a['median_ms'], p and p['median_ms']), fmt_ms(a), fmt_ms(p), mib(a), mib(p)))
    checks = []
    for path in sorted(glob.glob(os.path.join(d, 'legodnn-*.out.bin'))):
        tag = os.path.basename(path)[len('legodnn-'):-len('.out.bin')]
        ours = np.fromfile(path, dtype=np.float32)
        parts = []
        for e in ('ort', 'pytorch'):
            p = os.path.join(d, '%s-%s.out.bin' % (e, tag))
            if os.path.exists(p):
                ref = np.fromfile(p, dtype=np.float32)
                if ref.shape != ours.shape:
                    parts.append('%s: shapes differ' % NAMES[e])
                else:
                    parts.append('%s %.1e' % (NAMES[e], np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)))
        if parts:
            checks.append('%s (%s)' % (tag, ', '.join(parts)))
    if checks:
        out.append('')
        out.append('Outputs on the same input, max |legodnn − other| / max |other|: ' + '; '.join(checks) + '.')
    print('\n'.join(out))


if __name__ == '__main__':
    main()
