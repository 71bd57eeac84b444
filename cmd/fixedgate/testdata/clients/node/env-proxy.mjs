import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";

// Node's own fetch ignores HTTPS_PROXY; this makes it use HTTPS_PROXY / NO_PROXY.
setGlobalDispatcher(new EnvHttpProxyAgent());
const res = await fetch(process.env.TARGET_URL);
console.log(res.status, await res.text());
