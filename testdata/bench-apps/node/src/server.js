const http = require("http");
const { uptimeText, route } = require("./routes");

const port = Number(process.env.PORT || 8080);

http
  .createServer((req, res) => {
    const body = route(req.url, uptimeText());
    res.writeHead(body === null ? 404 : 200, { "content-type": "text/plain" });
    res.end(body === null ? "not found\n" : body + "\n");
  })
  .listen(port, () => console.log(`listening on ${port}`));
