"""The manifest of the dec8 run: the dec7 manifest (five tonal classes' cuts x3 + the world +
tone rows) with the knocking cuts of the event-cut manifest put in front three times as well:
the tonal-cut decoder renders knocks as drum hits (the taggers' top tag of 7 of the 8
one-event knocking test reconstructions), so knocks get the same weight as the tonal classes."""
import json

rows = [json.loads(line) for line in open('/work/s14/cuts/train.jsonl').read().splitlines() if line.strip()]
tonal = [json.loads(line) for line in open('/work/s14/cuts/tonal.jsonl').read().splitlines() if line.strip()]
knocks = [r for r in rows if '/s14/cuts/' in r['audio'] and r['caption'] == 'knocking']
out = [{**r, 'id': f"{r['id']}_r{rep}"} for rep in range(3) for r in knocks] + tonal
open('/work/s14/cuts/tonal_knock.jsonl', 'w').write(''.join(json.dumps(r) + '\n' for r in out))
print(len(knocks), len(tonal), len(out))
