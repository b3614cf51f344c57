"""Built-in placement policies, one module each; every module here is loaded by the registry."""
