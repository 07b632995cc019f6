"""Wall-clock seconds per epoch of resnet-tiny on the fixture (5,000 train), search/train.py path."""
import sys

import torch
from common import bundle, config

from hpsearch.search.train.loop import train

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
data = bundle(5000)
for augment in (True, False):
    cfg = config(model="resnet-tiny", epochs=1, augment=augment, val_size=5000)
    r = train(cfg, data)
    print(f"threads={threads} augment={augment} epoch_s={r.history[0].seconds:.1f} val={r.history[0].val_acc:.3f}", flush=True)
