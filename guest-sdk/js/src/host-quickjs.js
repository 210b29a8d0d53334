// The host interfaces as QuickJS (componentize-qjs) exposes them: one default export (an object)
// per interface module. `none` of an option is `null` here.
import session from "chaperon:scenario/session@0.1.0";
import http from "chaperon:scenario/http@0.1.0";
import websocket from "chaperon:scenario/websocket@0.1.0";

export { session, http, websocket };
export const engine = "quickjs";
export const none = null;
