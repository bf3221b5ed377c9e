# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Which product the host runs and where it keeps things; shared by every module.
    DOCUMENTATION = r"""
options:
  product:
    description:
      - The Theobald Software server product on the host. It selects the defaults of the
        options below (install dir, service display name, ports).
      - C(xtract_universal) is service C(Xtract Universal),
        ports 8065 (HTTP), 8165 (HTTPS) and 8064 (configuration server).
      - C(board_connector) is service C(BOARD Connector),
        ports 8097, 8197 and 8096.
      - C(yunio) is service C(yunio), ports 8075 and 8175,
        and no separate configuration server.
    type: str
    choices: [xtract_universal, board_connector, yunio]
    default: xtract_universal
  install_dir:
    description:
      - The product's install dir on the host.
      - Defaults to the folder of the service's executable, which for a default installation is the
        product's documented default (for example C(C:\Program Files\XtractUniversal)).
    type: str
  service_display_name:
    description:
      - The display name of the product's Windows service, used to find the service.
        Defaults to the product's documented display name.
    type: str
  service_name:
    description:
      - The key name of the product's Windows service. The vendor does not document it, so by
        default the service is found by O(service_display_name). Set it to skip that lookup.
    type: str
  web_http_port:
    description:
      - The web server's HTTP port, when the settings files do not say. Defaults to the product's.
    type: int
  web_https_port:
    description:
      - The web server's HTTPS port, when the settings files do not say. Defaults to the product's.
    type: int
  config_server_port:
    description:
      - The configuration server's port, when the settings files do not say. Defaults to the product's.
    type: int
  settings_map:
    description:
      - Where in C(config\servers\tls.json) each TLS setting lives, as a dotted JSON path
        (C(Section.Key), with C([n]) for list items). The layout of that file is not documented
        by the vendor; the defaults are this collection's assumption (see the collection's
        C(docs/assumptions.md)). Use M(xtractuniversal.tls.xu_tls_info) to see every thumbprint
        reference in your files, and map them here if your version differs.
    type: dict
    suboptions:
      web_protocol:
        description: The web server's protocol choice.
        type: str
        default: WebServer.Protocol
      web_certificate:
        description: The thumbprint of the web server's certificate.
        type: str
        default: WebServer.Certificate.Thumbprint
      config_server_authentication:
        description: The configuration server's authentication choice.
        type: str
        default: ConfigServer.Authentication
      config_server_certificate:
        description: The thumbprint of the configuration server's certificate.
        type: str
        default: ConfigServer.Certificate.Thumbprint
"""
