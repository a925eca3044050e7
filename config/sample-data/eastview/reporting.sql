-- Eastview's reporting database, as its Regional Information Center hosts it for the district's
-- finance and HR system: base tables and the reporting views the hub reads (connection
-- `eastview-reporting`). The demo reads reporting.sqlite, built from this file with
--   python3 -c "import sqlite3; sqlite3.connect('reporting.sqlite').executescript(open('reporting.sql').read())"

CREATE TABLE hr_employee (
    emp_no TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    status_code TEXT NOT NULL,
    hired DATE,
    separated DATE,
    email TEXT,
    birth_date DATE,
    changed_at TIMESTAMP NOT NULL
);

CREATE TABLE hr_position (
    emp_no TEXT NOT NULL REFERENCES hr_employee (emp_no),
    position_no TEXT NOT NULL,
    start_date DATE NOT NULL,
    end_date DATE,
    classification TEXT NOT NULL,
    title TEXT,
    fte NUMERIC NOT NULL,
    building TEXT,
    salary_schedule TEXT,
    step TEXT,
    annual_salary NUMERIC,
    gl_account TEXT,
    changed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (emp_no, position_no, start_date)
);

CREATE TABLE gl_budget (
    fiscal_year INTEGER NOT NULL,
    account TEXT NOT NULL,
    version TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (fiscal_year, account, version)
);

-- The views translate status codes the way the district's reports do.
CREATE VIEW rpt_employees AS
SELECT emp_no, first_name, last_name,
       CASE status_code WHEN 'A' THEN 'active' WHEN 'L' THEN 'on_leave'
            WHEN 'R' THEN 'retired' ELSE 'terminated' END AS status,
       hired, separated, email, birth_date, changed_at
FROM hr_employee;

CREATE VIEW rpt_assignments AS
SELECT emp_no, position_no, start_date, end_date, classification, title, fte, building,
       salary_schedule, step, annual_salary, gl_account, changed_at
FROM hr_position;

CREATE VIEW rpt_budget AS
SELECT fiscal_year, account, version, amount, changed_at FROM gl_budget;

INSERT INTO hr_employee VALUES
 ('E1001', 'Maria', 'Anderson', 'A', '2012-08-27', NULL, 'manderson@eastview.example.org', '1981-04-12', '2026-09-02 08:15:00'),
 ('E1002', 'Daniel', 'Brooks', 'A', '2016-09-01', NULL, 'dbrooks@eastview.example.org', '1988-11-30', '2026-09-02 08:15:00'),
 ('E1003', 'Li', 'Chen', 'A', '2009-08-31', NULL, 'lchen@eastview.example.org', '1976-02-03', '2026-09-02 08:15:00'),
 ('E1004', 'Rosa', 'Delgado', 'A', '2019-01-07', NULL, 'rdelgado@eastview.example.org', '1990-07-21', '2026-09-02 08:15:00'),
 ('E1005', 'Thomas', 'Evans', 'A', '2021-08-30', NULL, 'tevans@eastview.example.org', '1995-05-09', '2026-09-02 08:15:00'),
 ('E1006', 'Anna', 'Fischer', 'L', '2014-10-14', NULL, 'afischer@eastview.example.org', '1984-12-01', '2026-10-05 13:40:00'),
 ('E1007', 'Olivia', 'Grant', 'A', '2018-07-01', NULL, 'ogrant@eastview.example.org', '1979-09-17', '2026-09-02 08:15:00'),
 ('E1008', 'Kevin', 'Hughes', 'A', '2011-08-29', NULL, 'khughes@eastview.example.org', '1982-03-25', '2026-09-02 08:15:00'),
 ('E0987', 'Ruth', 'Ingram', 'R', '1994-09-01', '2026-06-30', NULL, '1961-01-14', '2026-07-01 09:00:00');

INSERT INTO hr_position VALUES
 ('E1001', 'P-TCH-014', '2012-08-27', NULL, 'teacher', 'Grade 4 teacher', 1.0, 'EES', 'EVTA', 'MA+30 step 14', 79400.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1002', 'P-TCH-022', '2016-09-01', NULL, 'teacher', 'Mathematics teacher', 1.0, 'EHS', 'EVTA', 'MA step 9', 72315.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1003', 'P-TCH-031', '2009-08-31', NULL, 'teacher', 'Special education teacher', 1.0, 'EMS', 'EVTA', 'MA+60 step 17', 83662.50, 'A2250.150-00-0000', '2026-09-02 08:15:00'),
 ('E1004', 'P-AID-007', '2019-01-07', NULL, 'aide', 'Teaching assistant', 0.8, 'EES', 'EVSSA', 'step 5', 37715.00, 'A2110.160-00-0000', '2026-09-02 08:15:00'),
 ('E1005', 'P-CUS-003', '2021-08-30', NULL, 'custodian', 'Custodian', 1.0, 'EHS', 'EVSSA', 'step 3', 44512.00, 'A1620.160-00-0000', '2026-09-02 08:15:00'),
 ('E1006', 'P-CLK-002', '2014-10-14', NULL, 'clerical', 'Senior account clerk', 1.0, 'DO', 'EVSSA', 'step 11', 50128.00, 'A1310.160-00-0000', '2026-10-05 13:40:00'),
 ('E1007', 'P-ADM-001', '2018-07-01', NULL, 'administrator', 'Elementary principal', 1.0, 'EES', 'EVAA', 'admin grade 2', 120000.00, 'A2020.150-00-0000', '2026-09-02 08:15:00'),
 ('E1008', 'P-TCH-009', '2011-08-29', NULL, 'teacher', 'Science teacher', 0.6, 'EHS', 'EVTA', 'MA step 13', 44118.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1008', 'P-CO-002', '2024-09-01', NULL, 'coach', 'Varsity soccer coach', 0.1, 'EHS', 'EVTA', 'stipend B', 4250.00, 'A2855.150-00-0000', '2026-09-02 08:15:00'),
 ('E0987', 'P-TCH-004', '1994-09-01', '2026-06-30', 'teacher', 'Reading teacher', 1.0, 'EES', 'EVTA', 'MA+60 step 25', 98120.00, 'A2110.150-00-0000', '2026-07-01 09:00:00');

INSERT INTO gl_budget VALUES
 (2027, 'A1310.160-00-0000', 'adopted', 182500.00, '2026-06-18 16:00:00'),
 (2027, 'A1620.160-00-0000', 'adopted', 611000.00, '2026-06-18 16:00:00'),
 (2027, 'A2020.150-00-0000', 'adopted', 365000.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.150-00-0000', 'adopted', 9840250.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.160-00-0000', 'adopted', 1210400.00, '2026-06-18 16:00:00'),
 (2027, 'A2250.150-00-0000', 'adopted', 2330000.00, '2026-06-18 16:00:00'),
 (2027, 'A2855.150-00-0000', 'adopted', 148900.00, '2026-06-18 16:00:00'),
 (2027, 'A9020.800-00-0000', 'adopted', 1980000.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.150-00-0000', 'amended-1', 9902750.00, '2026-10-08 10:30:00'),
 (2027, 'A2250.150-00-0000', 'amended-1', 2367500.00, '2026-10-08 10:30:00');

-- Purchasing: orders and their lines; the view gives each order with its lines as JSON, as
-- the district's reports do (PostgreSQL would use json_agg).
CREATE TABLE po_header (
    po_no TEXT PRIMARY KEY,
    vendor_code TEXT NOT NULL,
    po_date DATE NOT NULL,
    status TEXT NOT NULL,
    buyer TEXT,
    ship_to TEXT,
    total TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL
);

CREATE TABLE po_line (
    po_no TEXT NOT NULL REFERENCES po_header (po_no),
    line_no INTEGER NOT NULL,
    item_no TEXT,
    description TEXT NOT NULL,
    qty TEXT NOT NULL,
    uom TEXT NOT NULL,
    unit_cost TEXT NOT NULL,
    extended TEXT NOT NULL,
    gl_account TEXT,
    contract_no TEXT,
    PRIMARY KEY (po_no, line_no)
);

CREATE VIEW rpt_purchase_orders AS
SELECT h.po_no, h.vendor_code, h.po_date, h.status, h.buyer, h.ship_to, h.total, h.changed_at,
       json_group_array(json_object(
           'line_number', l.line_no, 'supplier_part_id', l.item_no, 'description', l.description,
           'quantity', l.qty, 'unit_of_measure', l.uom, 'unit_price', l.unit_cost,
           'amount', l.extended, 'account_code', l.gl_account, 'contract_id', l.contract_no
       )) AS order_lines
FROM po_header h JOIN (SELECT * FROM po_line ORDER BY po_no, line_no) l ON l.po_no = h.po_no
GROUP BY h.po_no, h.vendor_code, h.po_date, h.status, h.buyer, h.ship_to, h.total, h.changed_at;

INSERT INTO po_header VALUES
 ('EV27-0141', 'techsource', '2026-10-05', 'open', 'K. Hughes', 'Eastview High School', '8752.00', '2026-10-05 10:12:00'),
 ('EV27-0142', 'techsource', '2026-10-07', 'open', 'M. Anderson', 'Eastview Elementary', '1157.00', '2026-10-07 14:03:00'),
 ('EV27-0150', 'techsource', '2026-10-12', 'open', 'A. Fischer', 'District Office', '313.00', '2026-10-12 09:40:00'),
 ('EV27-0153', 'techsource', '2026-10-19', 'open', 'T. Evans', 'Eastview High School', '1445.00', '2026-10-19 11:25:00'),
 ('EV27-0157', 'techsource', '2026-10-26', 'open', 'L. Chen', 'Eastview Middle School', '2979.50', '2026-10-26 15:50:00');

INSERT INTO po_line VALUES
 ('EV27-0141', 1, 'CB-311E', 'Chromebook 11 EDU, 4 GB', '28', 'EA', '289.00', '8092.00', 'A2630.200-00-0000', 'NRB-27-TECH'),
 ('EV27-0141', 2, 'CASE-11', 'Rugged sleeve, 11 inch', '30', 'EA', '22.00', '660.00', 'A2630.450-00-0000', 'NRB-27-TECH'),
 ('EV27-0142', 1, 'PRJ-LZ5', 'Laser projector, 5000 lm', '1', 'EA', '1135.00', '1135.00', 'A2110.200-00-0000', 'NRB-27-TECH'),
 ('EV27-0142', 2, 'HDMI-6', 'HDMI cable, 6 ft', '2', 'EA', '11.00', '22.00', 'A2110.450-00-0000', 'NRB-27-TECH'),
 ('EV27-0150', 1, 'DOC-USBC', 'USB-C dock', '2', 'EA', '96.50', '193.00', 'A1310.200-00-0000', 'NRB-27-TECH'),
 ('EV27-0150', 2, 'TONER-K', 'Toner, black', '4', 'EA', '30.00', '120.00', 'A1310.450-00-0000', NULL),
 ('EV27-0153', 1, 'CB-311E', 'Chromebook 11 EDU, 4 GB', '5', 'EA', '289.00', '1445.00', 'A2630.200-00-0000', 'NRB-27-TECH'),
 ('EV27-0157', 1, 'CB-311E', 'Chromebook 11 EDU, 4 GB', '10', 'EA', '297.95', '2979.50', 'A2630.200-00-0000', 'NRB-27-TECH');
