# Python 2 imports this at start when autobahn/loopback is on PYTHONPATH (client.sh does that).
# wstest's fuzzingserver listens with autobahn's listenWS, which binds every interface and has
# no option for one; the tests are loopback only, so this makes listenWS bind 127.0.0.1.
#
# It waits for the module's import: at this point of start-up the virtualenv's site-packages
# are not on sys.path yet, and importing Twisted early would install its default reactor
# before wstest picks one.
import sys


class _BindLoopback(object):
    def find_module(self, name, path=None):
        if name == "autobahn.twisted.websocket":
            return self
        return None

    def load_module(self, name):
        sys.meta_path.remove(self)
        __import__(name)
        module = sys.modules[name]
        listen = module.listenWS

        def listenWS(factory, contextFactory=None, backlog=50, interface="127.0.0.1"):
            return listen(factory, contextFactory, backlog, interface)

        module.listenWS = listenWS
        return module


sys.meta_path.insert(0, _BindLoopback())
