"""Spearman rank correlation of each NAS-Bench-Suite-Zero proxy with the sample's val_accuracy,
per search space and task (docs/search-spaces.md). Python 3 standard library only.

Usage: python3 docs/zc_rank.py nas_bench_suite_zero_samples.jsonl.gz
"""
import gzip, json, math, sys, collections
def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0]*len(xs); i = 0
    while i < len(order):
        j = i
        while j+1 < len(order) and xs[order[j+1]] == xs[order[i]]: j += 1
        for k in range(i, j+1): r[order[k]] = (i+j)/2 + 1
        i = j+1
    return r
def spearman(a, b):
    ra, rb = ranks(a), ranks(b); n = len(a)
    ma, mb = sum(ra)/n, sum(rb)/n
    cov = sum((x-ma)*(y-mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x-ma)**2 for x in ra)); vb = math.sqrt(sum((y-mb)**2 for y in rb))
    return cov/(va*vb) if va and vb else float('nan')
groups = collections.defaultdict(list)
for line in gzip.open(sys.argv[1], 'rt'):
    d = json.loads(line.replace('-Infinity', '-1e8').replace('Infinity', '-1e8').replace('NaN', '-1e8'))
    groups[(d['search_space'], d['task'])].append(d)
proxies = ['synflow', 'nwot', 'jacov', 'snip', 'grad_norm', 'fisher', 'grasp', 'epe_nas', 'l2_norm', 'plain', 'flops', 'params']
print('| space | task | n | ' + ' | '.join(proxies) + ' |')
print('|---|---|---|' + '---|'*len(proxies))
for (space, task), rows in sorted(groups.items()):
    acc = [r['val_accuracy'] for r in rows]
    cells = []
    for p in proxies:
        if all(p in r['zero_cost'] for r in rows):
            cells.append('%.3f' % spearman([r['zero_cost'][p] for r in rows], acc))
        else:
            cells.append('–')
    print(f'| {space} | {task} | {len(rows)} | ' + ' | '.join(cells) + ' |')
