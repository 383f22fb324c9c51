// bench/contexts/apps/node: prints what it loaded, so a wrong image shows.
const express = require("express/package.json");
const lodash = require("lodash");
const ts = require("typescript");
console.log("node app", express.version, lodash.VERSION, ts.version);
