# Jupyter server of the code-runner-beta template. It listens on the capsule's loopback only:
# clients reach it through Wrenn's port URL (8888-<capsule id>.<domain>), which decides who
# may; so the server itself asks no token.
c = get_config()  # noqa: F821 (defined by Jupyter when it loads this file)

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = 8888
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.token = ""
c.ServerApp.password = ""
# Requests arrive with the port URL's Host header and no browser Origin.
c.ServerApp.allow_remote_access = True
c.ServerApp.allow_origin = "*"
c.ServerApp.disable_check_xsrf = True
c.ServerApp.root_dir = "/home/user"
c.ServerApp.jpserver_extensions = {"wrenn_code_runner": True}

c.MappingKernelManager.default_kernel_name = "wrenn"
# Kernels live as long as the capsule; an idle capsule is paused by Wrenn, not culled here.
c.MappingKernelManager.cull_idle_timeout = 0
