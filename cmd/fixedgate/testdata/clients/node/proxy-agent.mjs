import { fetch, ProxyAgent } from "undici";

// FIXEDGATE_PROXY=http://acme-corp:KEY@proxy.example.com:3128 (or https://…:443)
const dispatcher = new ProxyAgent(process.env.FIXEDGATE_PROXY);
const res = await fetch(process.env.TARGET_URL, { dispatcher });
console.log(res.status, await res.text());
