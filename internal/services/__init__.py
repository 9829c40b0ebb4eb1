"""The five services, one package each (its tables, its implementation of the generated
interface, its app; job_svc's workers and client_svc's command line with their service), and
`common`, what they share. A service reaches another only through the generated clients
(internal.peers), never through its modules. runner.py starts any of them by name."""
