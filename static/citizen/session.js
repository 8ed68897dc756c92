// The citizen's login session, one for all modules of the page, so that a
// renewed token pair is seen by every caller.

import { Session } from "/static/shared/api.js";

export const session = new Session("lianban.citizen");
