import os

import requests

# FIXEDGATE_PROXY=http://acme-corp:KEY@proxy.example.com:3128
proxy = os.environ["FIXEDGATE_PROXY"]
r = requests.get(os.environ["TARGET_URL"], proxies={"https": proxy}, timeout=30)
print(r.status_code, r.text)
