"""Print the one-event reconstruction scores of the vae_fidelity.py files given."""

import json
import sys

for path in sys.argv[1:]:
    data = json.load(open(path))
    for vae in data["vaes"]:
        single = vae["subsets"]["single"]
        rec, ceil = single["reconstructed"], single["ceiling"]
        print(
            f"{path}: {vae['vae']} tagger {data['tagger']}: recall {rec['recall_micro']:.3f} "
            f"(ceiling {ceil['recall_micro']:.3f}) precision {rec['precision_micro']:.3f} "
            f"same tags {single['same_tags_share']:.3f} "
            f"log-mel {vae['log_mel_difference_db']:.2f} dB"
        )
