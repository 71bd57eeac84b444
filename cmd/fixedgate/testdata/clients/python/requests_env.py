import os

import requests

# HTTPS_PROXY=http://acme-corp:KEY@proxy.example.com:3128 in the environment
r = requests.get(os.environ["TARGET_URL"], timeout=30)
print(r.status_code, r.text)
