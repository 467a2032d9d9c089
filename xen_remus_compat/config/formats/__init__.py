"""The formats of a domain configuration, one public module each (model <->
text): ``sxpr``, ``libxl_json``, ``xlcfg``, ``libvirt_xml``.  A format's
parts sit next to it, named after it (``sxpr_devices``, ``libxl_json_writer``,
...); formats import model, common, xlpolicy and specs, never each other."""
