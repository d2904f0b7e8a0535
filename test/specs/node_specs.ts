// Node specs: the source entry as Node users get it (Dawn set up when a Vulkan driver exists).
import '../../src/index_node';
import './test_flags';

import './backend_spec';
import './package_spec';
import './access_spec';
import './fusion_spec';
import './model_spec';
import './replay_spec';
import './command_recorder_spec';
import './host_values_spec';
import './attention_api_spec';
import './attention_matrix_spec';
import './search_spec';
import './search_backend_spec';
