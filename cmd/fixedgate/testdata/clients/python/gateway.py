import os

import requests

# No proxy settings: the route's name (TARGET_URL's host) resolves to fixedgate's fixed IPs.
r = requests.get(os.environ["TARGET_URL"], timeout=30)
print(r.status_code, r.text)
