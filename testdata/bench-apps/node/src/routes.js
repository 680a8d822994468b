const ms = require("ms");

const started = Date.now();

function uptimeText() {
  return "up " + ms(Date.now() - started, { long: true });
}

function route(url, uptime) {
  switch (url) {
    case "/healthz":
      return "ok";
    case "/uptime":
      return uptime;
    default:
      return null;
  }
}

module.exports = { uptimeText, route };
