// vwell-pbx-srv browser client as an ES module:
//   import {connect} from 'http://HOST:8930/client.js';
// The code is client.global.js (the plain <script> build, which also sets
// globalThis.VwellPbx); this module only re-exports it. Types: /client.d.ts.
import './client.global.js';

const VwellPbx = globalThis.VwellPbx;
export const {
  connect, Client, PbxError, sha1Hex, matches, callSeconds, callEventKinds, defaultUrl, version,
} = VwellPbx;
export {VwellPbx};
export default VwellPbx;
