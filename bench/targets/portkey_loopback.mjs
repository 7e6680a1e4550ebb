// Preloaded into Portkey's gateway by bench/targets/portkey.py (`node --import`).
// The gateway's start script calls serve({fetch, port}) with no host, which listens on every
// interface; this makes a listen() given only a port bind 127.0.0.1, so the bench's peer is
// reachable on loopback alone, like every other target.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    if (args[1] === undefined) args.splice(1, 1);
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
