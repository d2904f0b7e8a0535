// Chromium specs: the browser entry (WebGPU base on the browser's adapter).
import '../../src/index';

import './backend_spec';
import './fusion_spec';
import './attention_api_spec';
import './search_spec';
import './search_backend_spec';
import './search_browser_spec';
