// Reads a JSON array of rendered objects on stdin; validates each SecretStore and ExternalSecret of
// external-secrets.io/v1 with the models' generated validators; prints one JSON result per object.
import { readFileSync } from "node:fs";
import { ExternalSecret, SecretStore } from "@kubernetes-models/external-secrets/external-secrets.io/v1";

const models = { SecretStore, ExternalSecret };
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const obj of objects) {
  const Model = obj.apiVersion === "external-secrets.io/v1" ? models[obj.kind] : undefined;
  if (!Model) {
    console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata?.name, result: "skipped" }));
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata.name, result: "valid" }));
  } catch (err) {
    failed += 1;
    console.log(JSON.stringify({ kind: obj.kind, name: obj.metadata?.name, result: "invalid", error: err.message }));
  }
}
process.exit(failed ? 1 : 0);
