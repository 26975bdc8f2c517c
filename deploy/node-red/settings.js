/**
 * Node-RED settings for the ongrid example flow, used by docker-compose (profile nodered) and by
 * tests/integration/test_node_red.py. Everything comes from the environment:
 *   MQTT_HOST, MQTT_PORT, MQTT_USER, MQTT_PASSWORD or MQTT_PASSWORD_FILE   the broker (user nodered)
 *   ONGRID_SITE                    the site whose dispatcher mode the inject nodes set
 *   NODE_RED_PORT, NODE_RED_HOST   where Node-RED listens (1880, 0.0.0.0)
 *   NODE_RED_ENABLE_EDITOR         "false": headless (no editor UI; the admin API stays for the
 *                                  inject buttons, on NODE_RED_HOST)
 *   NODE_RED_FLOW_FILE             where the flow lives; seeded from this folder's flows.json
 * Nothing here calls out to the internet: no palette catalogue, no update check, no diagnostics.
 */
const fs = require("fs");
const path = require("path");

if (!process.env.MQTT_PASSWORD && process.env.MQTT_PASSWORD_FILE) {
  process.env.MQTT_PASSWORD = fs.readFileSync(process.env.MQTT_PASSWORD_FILE, "utf8").trim();
}
process.env.ONGRID_SITE = process.env.ONGRID_SITE || "home";

const example = path.join(__dirname, "flows.json");
const flowFile = process.env.NODE_RED_FLOW_FILE || example;
// First start with a writable flow file elsewhere (compose: /data): copy the example and its
// credential placeholders there, so the editor can deploy changes without touching this folder.
if (flowFile !== example && !fs.existsSync(flowFile)) {
  fs.copyFileSync(example, flowFile);
  const creds = flowFile.replace(/\.json$/, "_cred.json");
  fs.copyFileSync(path.join(__dirname, "flows_cred.json"), creds);
}
const editor = (process.env.NODE_RED_ENABLE_EDITOR || "true").toLowerCase() !== "false";

module.exports = {
  uiPort: parseInt(process.env.NODE_RED_PORT || "1880", 10),
  uiHost: process.env.NODE_RED_HOST || "0.0.0.0",
  flowFile: flowFile,
  // The credentials file holds only ${MQTT_USER}/${MQTT_PASSWORD} placeholders, filled from the
  // environment at start, so it is kept unencrypted and nothing secret is ever written to disk.
  credentialSecret: false,
  flowFilePretty: true,
  disableEditor: !editor,
  httpAdminRoot: "/",
  httpNodeRoot: false,
  diagnostics: { enabled: false, ui: false },
  telemetry: { enabled: false },
  runtimeState: { enabled: false, ui: false },
  externalModules: {
    autoInstall: false,
    palette: { allowInstall: false, allowUpdate: false, allowUpload: false },
    modules: { allowInstall: false },
  },
  functionExternalModules: false,
  editorTheme: {
    tours: false,
    projects: { enabled: false },
    palette: { catalogues: [] },
  },
  logging: {
    console: { level: process.env.NODE_RED_LOG_LEVEL || "info", metrics: false, audit: false },
  },
};
