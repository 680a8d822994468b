// Minifies every module under src/ into dist/ (the build stage's work).
const fs = require("fs");
const path = require("path");
const { minify } = require("terser");

async function main() {
  fs.mkdirSync("dist", { recursive: true });
  for (const name of fs.readdirSync("src").sort()) {
    if (!name.endsWith(".js")) continue;
    const code = fs.readFileSync(path.join("src", name), "utf8");
    const out = await minify(code, { module: false, compress: true, mangle: true });
    fs.writeFileSync(path.join("dist", name), out.code);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
