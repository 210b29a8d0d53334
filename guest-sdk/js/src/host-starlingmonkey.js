// The host interfaces as StarlingMonkey (componentize-js) exposes them: named exports of each
// interface module. `none` of an option is `undefined` here.
import * as session from "chaperon:scenario/session@0.1.0";
import * as http from "chaperon:scenario/http@0.1.0";
import * as websocket from "chaperon:scenario/websocket@0.1.0";

export { session, http, websocket };
export const engine = "starlingmonkey";
export const none = undefined;
