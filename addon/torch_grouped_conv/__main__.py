"""python -m torch_grouped_conv: status (built for which torch, loaded here or why not, the
kernel the policy picks for a sample case). Exit status 0 when the add-on is active."""
import sys

from torch_grouped_conv._status import main

sys.exit(main())
