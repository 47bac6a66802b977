"""The manifest of the dec7 run: the event cuts of five tonal classes (from the event-cut
manifest of ../2026-11-27-decoder-events) three times each, ids made unique, then the world +
tone-clip rows of that manifest (656 cuts, 3200 rows; 5168 in all)."""
import json

rows = [json.loads(line) for line in open('/work/s14/cuts/train.jsonl').read().splitlines() if line.strip()]
keep = {'piano', 'plucked_string', 'alarm', 'car_horn', 'bell'}
cuts = [r for r in rows if '/s14/cuts/' in r['audio'] and r['caption'] in keep]
base = [r for r in rows if '/s14/cuts/' not in r['audio']]
out = [{**r, 'id': f"{r['id']}_r{rep}"} for rep in range(3) for r in cuts] + base
open('/work/s14/cuts/tonal.jsonl', 'w').write(''.join(json.dumps(r) + '\n' for r in out))
print(len(cuts), len(base), len(out))
