# Device-side environment, sourced by the other scripts (run from the repo root there): the
# unpacked models, carried wheels on PYTHONPATH, and a `python` that is the image's python3.
X=/tmp/x
mkdir -p $X/root $X/logs $X/res /tmp/bin /tmp/site
[ -x /tmp/bin/python ] || { printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/bin/python; chmod +x /tmp/bin/python; }
export PATH=/tmp/bin:$PATH LATENTSTUDIO_HOME=$X/root/home PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
