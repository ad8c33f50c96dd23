// The 404 page: only the header's image count, like every other page.

import { showLibraryCount } from "./ui.js";

showLibraryCount();
