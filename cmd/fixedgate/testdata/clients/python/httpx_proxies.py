import os

import httpx

# FIXEDGATE_PROXY=http://acme-corp:KEY@proxy.example.com:3128
# httpx >= 0.26 spells it proxy=...; Debian 12's httpx 0.23 only knows proxies=.
with httpx.Client(proxies=os.environ["FIXEDGATE_PROXY"], timeout=30) as client:
    r = client.get(os.environ["TARGET_URL"])
print(r.status_code, r.text)
